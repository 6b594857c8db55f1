"""A real RTSP server on loopback for the live-stream tests and the soak benchmark.

Runs under the Debian system python (``/usr/bin/python3``), which has the GStreamer
bindings (Debian packages python3-gi, gir1.2-gst-rtsp-server-1.0,
gstreamer1.0-plugins-base/good/bad/ugly, gstreamer1.0-libav; ``.ci/run`` installs
them). The project's own python does not need them: tests start this file as a
separate process.

The clip is decoded once at start (scaled, I420, kept in memory) and served in an
endless loop as live H.264 over RTSP (x264, zero-latency), one mount per ``--mount``,
each client getting its own pipeline. With ``--user``/``--password`` every mount
requires HTTP basic authentication. Prints ``READY <port>`` on stdout once clients
may connect.

    /usr/bin/python3 tests/rtsp_server.py --clip samples/pdestre_session3/cam1.webm \\
        --port 8554 --mount cam1 --user viewer --password s3cret
"""

from __future__ import annotations

import argparse
import socket
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def decode_clip(path: str, width: int, height: int, fps: int, max_frames: int) -> list[bytes]:
    """Every frame of ``path`` as raw I420 bytes of width x height."""
    pipeline = Gst.parse_launch(
        f'filesrc location="{path}" ! decodebin ! videoconvert ! videoscale ! videorate ! '
        f"video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 ! "
        "appsink name=sink sync=false emit-signals=false max-buffers=0"
    )
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    frames: list[bytes] = []
    while len(frames) < max_frames:
        sample = sink.emit("pull-sample")
        if sample is None:
            break
        buffer = sample.get_buffer()
        ok, info = buffer.map(Gst.MapFlags.READ)
        if ok:
            frames.append(bytes(info.data))
            buffer.unmap(info)
    pipeline.set_state(Gst.State.NULL)
    if not frames:
        raise SystemExit(f"rtsp_server: no frame decoded from {path}")
    return frames


class LoopFactory(GstRtspServer.RTSPMediaFactory):
    """A media factory whose appsrc replays the decoded frames forever, live-paced."""

    def __init__(self, frames: list[bytes], width: int, height: int, fps: int) -> None:
        super().__init__()
        self.frames, self.fps = frames, fps
        self.caps = f"video/x-raw,format=I420,width={width},height={height},framerate={fps}/1"
        self.set_launch(
            f"( appsrc name=src is-live=true format=time caps={self.caps} ! videoconvert ! "
            f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
            "bitrate=800 ! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
        self.set_shared(False)
        self.connect("media-configure", self._configure)

    def _configure(self, _factory, media) -> None:
        src = media.get_element().get_child_by_name("src")
        state = {"n": 0}
        duration = Gst.SECOND // self.fps

        def need_data(appsrc, _length) -> None:
            n = state["n"]
            buffer = Gst.Buffer.new_wrapped(self.frames[n % len(self.frames)])
            buffer.pts = n * duration
            buffer.duration = duration
            state["n"] = n + 1
            appsrc.emit("push-buffer", buffer)

        src.connect("need-data", need_data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clip", required=True)
    parser.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    parser.add_argument("--mount", action="append", default=[], help="path, e.g. cam1")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--max-frames", type=int, default=150)
    parser.add_argument("--user", default=None)
    parser.add_argument("--password", default=None)
    args = parser.parse_args()
    Gst.init(None)
    frames = decode_clip(args.clip, args.width, args.height, args.fps, args.max_frames)
    port = args.port or free_port()
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, args.user)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
    mounts = server.get_mount_points()
    for mount in args.mount or ["stream"]:
        factory = LoopFactory(frames, args.width, args.height, args.fps)
        if args.user:
            permissions = GstRtspServer.RTSPPermissions()
            permissions.add_role(args.user)
            permissions.add_permission_for_role(
                args.user, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
            permissions.add_permission_for_role(
                args.user, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
            factory.set_permissions(permissions)
        mounts.add_factory("/" + mount.strip("/"), factory)
    if server.attach(None) == 0:
        raise SystemExit(f"rtsp_server: cannot listen on 127.0.0.1:{port}")
    print(f"READY {port}", flush=True)
    try:
        GLib.MainLoop().run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
