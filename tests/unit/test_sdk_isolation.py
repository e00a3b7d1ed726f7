"""The SDK needs only what it declares: grpcio, protobuf, googleapis-common-protos (and theirs).

Partners install `pointex-client` alone. A fresh interpreter imports the whole SDK and builds
both clients behind an import gate that refuses any module that is neither the standard
library, the SDK itself, nor provided by a distribution in the closure of the dependencies
`client/pyproject.toml` declares: an import of the server, the CLI's libraries or a database
driver fails the test.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = textwrap.dedent(
    """
    import importlib.abc, importlib.metadata as md, re, sys, tomllib
    from pathlib import Path

    def name_of(requirement):
        return re.split(r"[<>=!~;\\[ (]", requirement, maxsplit=1)[0].strip().lower()

    declared = tomllib.loads(Path(sys.argv[1]).read_text())["project"]["dependencies"]
    dists, todo = set(), [name_of(r) for r in declared]
    while todo:
        dist = todo.pop().replace("_", "-")
        if dist not in dists:
            dists.add(dist)
            todo += [name_of(r) for r in md.requires(dist) or [] if "extra ==" not in r]
    provided = {
        top for top, owners in md.packages_distributions().items()
        if {o.lower().replace("_", "-") for o in owners} & dists
    }
    SDK = ("pointex.client", "pointex.v1", "pointex.sandbox")

    class Gate(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top.startswith("_") or top in provided:
                return None
            if name == "pointex" or name.startswith(SDK):
                return None
            raise ImportError(f"the SDK imported {name}, which it does not declare")

    sys.meta_path.insert(0, Gate())
    import pointex.client
    import pointex.client.aio, pointex.client.sync, pointex.client.bulk
    import pointex.client.builders, pointex.client.callbacks, pointex.client.reasons
    from pointex.client import AsyncPointexClient, PointexClient, Targets
    PointexClient(Targets("127.0.0.1:1", "127.0.0.1:2"), "token").close()
    print(" ".join(sorted(dists)))
    """
)


def test_the_sdk_imports_nothing_its_dependencies_do_not_provide() -> None:
    """Import every SDK module behind the gate; the declared closure is exactly three plus one."""
    ran = subprocess.run(
        [sys.executable, "-I", "-c", PROBE, str(ROOT / "client" / "pyproject.toml")],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == [
        "googleapis-common-protos",
        "grpcio",
        "protobuf",
        "typing-extensions",  # grpcio's own dependency.
    ]


def test_the_gate_refuses_what_the_sdk_does_not_declare() -> None:
    """The same gate refuses the server package: the test above could fail."""
    probe = PROBE.replace("import pointex.client\n", "import pointex.server.limits\n", 1)
    ran = subprocess.run(
        [sys.executable, "-I", "-c", probe, str(ROOT / "client" / "pyproject.toml")],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert ran.returncode != 0
    assert "the SDK imported pointex.server" in ran.stderr
