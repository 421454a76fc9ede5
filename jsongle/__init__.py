"""jsongle: a WebRTC signaling server speaking JSONgle over Socket.IO."""

__version__ = "0.1.0"
DESCRIPTION = "Easy signaling using jsongle"
