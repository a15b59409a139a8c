#!/bin/sh
# Regenerates examples/media/: the demo HLS stream `streammeter serve` falls back to when no
# origin is configured (docs/configuration.md#origin_url), and the real-ffmpeg playlists test/media/playlist-rewriter.test.ts
# checks the rewriter against.
#
# Made with: ffmpeg 5.1.9-0+deb12u1 (Debian 12, libx264 core 164, ffmpeg's native AAC encoder).
# Other ffmpeg versions produce the same layout and playlists of the same shape, but not
# byte-identical segments (encoder versions differ). With the same build the output is
# reproducible byte for byte: fixed synthetic sources (testsrc2, sine; no randomness), one encoder
# thread, bitexact muxing (no version strings or creation times), a fixed demo key and the IV
# ffmpeg derives from the media sequence number.
#
# Usage: sh examples/make-demo-media.sh   (from anywhere; overwrites examples/media/ except README.md)
# Needs: ffmpeg with libx264 (FFMPEG=/path/to/ffmpeg to choose one), GNU grep, od.
set -eu

FFMPEG=${FFMPEG:-ffmpeg}
here=$(cd "$(dirname "$0")" && pwd)
out="$here/media"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

DURATION=8        # seconds of media
SEGMENT=2         # target segment duration, seconds (RFC 8216 §4.3.3.1 EXT-X-TARGETDURATION)
FPS=24
SIZE=320x180
# A DEMO key, published in the repository on purpose: it shows the proxy rewriting and metering
# an encrypted stream's key URI. It protects nothing. (AES-128, RFC 8216 §4.3.2.4.)
KEY_HEX=000102030405060708090a0b0c0d0e0f

q () { "$FFMPEG" -hide_banner -loglevel error -nostdin -y "$@"; }

rm -rf "$out/plain" "$out/enc" "$out/fmp4" "$out/master.m3u8" "$out/sample.mp4"
mkdir -p "$out/plain" "$out/enc" "$out/fmp4"

# 1. One mezzanine encode, remuxed (not re-encoded) into every package below, so that all
#    variants carry identical frames and cut at identical points. A keyframe every SEGMENT
#    seconds exactly (no scene-cut keyframes) gives segments of SEGMENT seconds.
q -f lavfi -i "testsrc2=size=$SIZE:rate=$FPS:duration=$DURATION" \
  -f lavfi -i "sine=frequency=440:beep_factor=4:sample_rate=48000:duration=$DURATION" \
  -map 0:v -map 1:a \
  -c:v libx264 -profile:v main -level 3.0 -pix_fmt yuv420p -preset veryfast -threads 1 \
  -b:v 160k -maxrate 200k -bufsize 400k \
  -g $((FPS * SEGMENT)) -keyint_min $((FPS * SEGMENT)) -sc_threshold 0 \
  -c:a aac -b:a 64k -ac 2 \
  -map_metadata -1 -fflags +bitexact -flags:v +bitexact -flags:a +bitexact \
  "$tmp/mezzanine.mp4"

hls () { # hls <dir> [extra hls muxer options…]: VOD media playlist <dir>/index.m3u8
  dir=$1; shift
  q -i "$tmp/mezzanine.mp4" -map 0 -c copy -map_metadata -1 -fflags +bitexact \
    -f hls -hls_time $SEGMENT -hls_list_size 0 -hls_playlist_type vod \
    -master_pl_name variant.m3u8 "$@" "$out/$dir/index.m3u8"
}

# 2. Plain MPEG-TS segments.
hls plain -hls_segment_filename "$out/plain/seg%03d.ts"

# 3. AES-128 MPEG-TS. The key-info file is: key URI as written in the playlist (relative, so
#    the proxy rewrites and signs it like any segment), key file path, and no IV line: ffmpeg
#    5.1 then derives the IV from the first media sequence number (0), writes it into the
#    EXT-X-KEY tag and uses it for every segment (checked: each seg decrypts, with
#    openssl, to exactly the plain/ segment: see media/README.md). Deterministic.
printf '\000\001\002\003\004\005\006\007\010\011\012\013\014\015\016\017' > "$out/enc/enc.key"
[ "$(od -An -tx1 "$out/enc/enc.key" | tr -d ' \n')" = "$KEY_HEX" ] || { echo 'enc.key != KEY_HEX' >&2; exit 1; }
printf 'enc.key\n%s\n' "$out/enc/enc.key" > "$tmp/enc.keyinfo"
hls enc -hls_key_info_file "$tmp/enc.keyinfo" -hls_segment_filename "$out/enc/seg%03d.ts"

# 4. Fragmented MP4 (CMAF-style) segments with an EXT-X-MAP init section.
hls fmp4 -hls_segment_type fmp4 -hls_fmp4_init_filename init.mp4 \
  -hls_segment_filename "$out/fmp4/seg%03d.m4s"

# 5. The master playlist. ffmpeg measured each variant's BANDWIDTH and RESOLUTION in its
#    variant.m3u8 (one variant each); gather those STREAM-INF lines, pointing at each
#    directory's index.m3u8. ffmpeg 5.1 leaves out CODECS on a stream copy, and players use it
#    to pick a variant before loading it (RFC 8216 §4.3.4.2 says it SHOULD be there): build
#    it from the avcC box (profile, constraint flags, level: RFC 6381 §3.3) and AAC-LC.
avcc=$(grep -obUa avcC "$out/fmp4/init.mp4" | head -n 1 | cut -d: -f1)
codecs="avc1.$(od -An -tx1 -j $((avcc + 5)) -N 3 "$out/fmp4/init.mp4" | tr -d ' \n'),mp4a.40.2"
{
  printf '#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n'
  for dir in plain enc fmp4; do
    grep '^#EXT-X-STREAM-INF:' "$out/$dir/variant.m3u8" | sed "s/\$/,CODECS=\"$codecs\"/"
    printf '%s/index.m3u8\n' "$dir"
    rm "$out/$dir/variant.m3u8"
  done
} > "$out/master.m3u8"

# 6. A small progressive MP4 for the non-HLS path (Range requests, file_type mp4), with the
#    moov box first so that a browser can start playing before the whole file has arrived.
q -i "$tmp/mezzanine.mp4" -map 0 -c copy -map_metadata -1 -fflags +bitexact \
  -movflags +faststart "$out/sample.mp4"

du -sh "$out"
