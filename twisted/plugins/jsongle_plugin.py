"""``twistd jsongle``: names the service module lazily, so --help stays light."""

from twisted.application.service import ServiceMaker

jsongle = ServiceMaker(
    "jsongle",
    "jsongle.tap",
    "A WebRTC signaling server speaking JSONgle over Socket.IO",
    "jsongle",
)
