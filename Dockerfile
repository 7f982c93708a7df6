# One image, one binary: the role is the first argument (tracker, origin, peer, demo, ...).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/crowdsurf .
# What a viewer needs, without the NATS server, RTSP or the load test: `crowdsurf-peer WATCHLINK`.
RUN CGO_ENABLED=0 go build -tags viewer -trimpath -ldflags "-s -w" -o /out/crowdsurf-peer .

FROM debian:bookworm-slim
RUN useradd --system --create-home crowdsurf
COPY --from=build /out/crowdsurf /out/crowdsurf-peer /usr/local/bin/
USER crowdsurf
WORKDIR /home/crowdsurf
ENTRYPOINT ["crowdsurf"]
