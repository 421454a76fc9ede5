"""Test support: drive the real daemon and real socket.io-client sockets."""
