"""Registers the ``ice-servers`` query (TURN credentials on request) as a Twisted plugin."""

from jsongle.signaling.icequery import IceServersHandler

ice_servers = IceServersHandler()
