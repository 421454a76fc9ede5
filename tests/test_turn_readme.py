"""The README's TURN section: its coturn configuration and its jsongle settings work together.

coturn runs with the README's turnserver.conf (only what a test machine
cannot have is changed: ports, the TLS files, the listening address), and a
TURN Allocate with the credentials jsongle computes from the README's
settings is granted.
"""

from __future__ import annotations

import dataclasses
import re
import time

from jsongle.config import load_config
from jsongle.signaling.turn import ice_servers_from_config
from tests.support.daemon import REPO_ROOT
from tests.support.turn import allocate

#: What the test machine replaces: its own ports and no certificate files.
REPLACED = ("listening-port", "tls-listening-port", "cert", "pkey")


def readme_blocks() -> tuple[str, str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## TURN\n") :]
    section = section[: section.index("\n## ", 1)]
    coturn, jsongle = re.findall(r"```ini\n(.*?)```", section, re.S)[:2]
    return coturn, jsongle


def test_readme_blocks_say_what_matters():
    coturn, jsongle = readme_blocks()
    lines = set(coturn.splitlines())
    assert "use-auth-secret" in lines
    secret = next(line.split("=", 1)[1] for line in lines if line.startswith("static-auth-secret="))
    assert f"turnSecret={secret}" in jsongle.splitlines()
    assert any(line.startswith("realm=") for line in lines)


def test_readme_configurations_work_together(tmp_path, turn_factory):
    coturn, jsongle = readme_blocks()
    env = tmp_path / "jsongle.env"
    env.write_text(jsongle, encoding="utf-8")
    config, warnings = load_config(str(env), {})
    assert warnings == []
    servers = ice_servers_from_config(config)
    assert servers.turn and servers.stun_uris
    kept = [line for line in coturn.splitlines() if line.split("=", 1)[0] not in REPLACED]
    turn = turn_factory(config.turn_secret, config_text="\n".join(kept) + "\nno-tls\nno-dtls\n")
    assert "Bad configuration format" not in turn.log(), turn.log()
    (_, entry) = servers.ice_servers("alice", time.time())
    assert allocate(turn.port, entry["username"], entry["credential"]) == 0
    wrong = ice_servers_from_config(dataclasses.replace(config, turn_secret="another"))
    (_, bad) = wrong.ice_servers("alice", time.time())
    assert allocate(turn.port, bad["username"], bad["credential"]) == 401

