#!/usr/bin/env bash
# Regenerates testcard.ts, the built-in test card embedded by testcard.go.
#
# Why these numbers:
#   - 16 s is a common multiple of one video frame (1/25 s) and one AAC frame
#     (1024/48000 s): the lowest such multiple is 0.32 s, and 16 s = 400 frames =
#     750 AAC frames, so video and audio end together and the clip loops without
#     a gap or an overlap. 16 s is also a whole number of 2 s segments, so
#     keyframes stay on the segment grid across loops.
#   - -g 25 / -keyint_min 25 / -sc_threshold 0: one IDR every second and nowhere
#     else, so 2 s segments cut cleanly; the clip starts with an IDR.
#   - baseline profile: no B-frames, so PTS == DTS and the publisher stays simple.
#   - the 1 kHz tone makes a whole number of cycles in 16 s, so the loop is
#     phase-continuous too.
#   - testsrc2 draws its own running time and frame number (top left), so no
#     drawtext and no font are needed.
set -euo pipefail

cd "$(dirname "$0")"

command -v ffmpeg >/dev/null || { echo "gen.sh: ffmpeg not found; install ffmpeg" >&2; exit 1; }

duration=16
fps=25
ffmpeg -hide_banner -loglevel error -y \
	-f lavfi -i "testsrc2=size=640x360:rate=${fps}:duration=${duration}" \
	-f lavfi -i "sine=frequency=1000:sample_rate=48000:duration=${duration}" \
	-pix_fmt yuv420p \
	-c:v libx264 -profile:v baseline -preset medium \
	-b:v 600k -maxrate 600k -bufsize 1200k \
	-g "$fps" -keyint_min "$fps" -sc_threshold 0 -bf 0 \
	-c:a aac -profile:a aac_low -b:a 64k -ar 48000 -ac 1 \
	-f mpegts testcard.ts

ls -l testcard.ts
