"""oslo.policy's tools with ``--namespace glimpse`` (the entry points in pyproject.toml), run as
operators run them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from glimpse import policy_namespace
from glimpse.domain.policy import RULES

BIN = Path(sys.executable).parent


def run(tool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / tool), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def test_list_rules_registers_every_rule() -> None:
    defaults = policy_namespace.list_rules()
    assert [d.name for d in defaults] == [r.name for r in RULES]
    get_image = next(d for d in defaults if d.name == "get_image")
    assert get_image.scope_types == ["project"]
    assert {"method": "GET", "path": "/v2/images/{image_id}"} in get_image.operations


def test_sample_generator(tmp_path: Path) -> None:
    done = run("oslopolicy-sample-generator", "--namespace", "glimpse", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    names = re.findall(r'^#"([a-z_]+)":', done.stdout, re.MULTILINE)
    assert names == [r.name for r in RULES]
    assert '#"publicize_image": "rule:context_is_admin"' in done.stdout


def test_policy_generator_validator_and_checker(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(
        'publicize_image: "role:image_publicizer"\nget_imagez: "role:x"\n')
    (tmp_path / "glimpse.conf").write_text(
        f"[oslo_policy]\npolicy_file = {tmp_path / 'policy.yaml'}\n")
    conf = ("--namespace", "glimpse", "--config-file", str(tmp_path / "glimpse.conf"))

    validated = run("oslopolicy-validator", *conf, cwd=tmp_path)
    assert validated.returncode == 1
    assert "Unknown rule found in policy file: get_imagez" in validated.stdout

    generated = run("oslopolicy-policy-generator", *conf, "--output-file", "effective.yaml",
                    cwd=tmp_path)
    assert generated.returncode == 0, generated.stderr
    effective = (tmp_path / "effective.yaml").read_text()
    assert '"publicize_image": "role:image_publicizer"' in effective
    assert '"add_image": "rule:context_is_admin or (role:member' in effective

    # The checker reads a policy file (it has no --namespace): the effective one.
    (tmp_path / "token.json").write_text(json.dumps({"token": {
        "roles": [{"name": "member"}, {"name": "reader"}], "user": {"id": "u1"},
        "project": {"id": "p1"}}}))
    (tmp_path / "target.json").write_text(json.dumps(
        {"project_id": "p1", "owner": "p1", "visibility": "private"}))
    answers = {}
    for rule in ("add_image", "publicize_image", "delete_image"):
        checked = run("oslopolicy-checker", "--policy", "effective.yaml", "--access",
                      "token.json", "--target", "target.json", "--rule", rule, cwd=tmp_path)
        assert checked.returncode == 0, checked.stderr
        answers[rule] = checked.stdout.strip()
    assert answers == {"add_image": "passed: add_image",
                       "publicize_image": "failed: publicize_image",
                       "delete_image": "passed: delete_image"}
