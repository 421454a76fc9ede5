"""Dropin: registers the 'room-members' query handler with jsongle.

Twisted imports every module of every ``twisted/plugins`` directory when
jsongle starts; each module-level object providing IPlugin is a plugin.
Keep this file tiny and give it a unique name (never ``jsongle.py``).
"""

from room_members import RoomMembersHandler

room_members = RoomMembersHandler()
