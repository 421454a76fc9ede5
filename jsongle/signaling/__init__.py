"""JSONgle signaling: identities, rooms and relays; no transport here."""
