# One image, one binary: the role is the first argument (tracker, origin, peer, demo, ...).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/crowdsurf .

FROM debian:bookworm-slim
RUN useradd --system --create-home crowdsurf
COPY --from=build /out/crowdsurf /usr/local/bin/crowdsurf
USER crowdsurf
WORKDIR /home/crowdsurf
ENTRYPOINT ["crowdsurf"]
