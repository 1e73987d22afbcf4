"""The helm binary devcluster/build.sh builds, run the way a user runs it, and nothing else.

Why it is shaped this way:
- Helm keeps a cache, a config and a data dir under $HOME; here all three
  live under a directory the caller owns (a test's tmp_path), so nothing is
  written to the real home and two tests never share a repository list.
- Values go in as a file (`-f`), the way the README tells users to keep them,
  never as --set strings that would need helm's own escaping.
- No `--wait` by default: the tests wait the way users do (`kubectl rollout
  status`), so helm's own waiting logic is not what a test proves.
"""

import json
import os
import subprocess
from pathlib import Path
from typing import Optional

import yaml

from .binaries import REPO_ROOT, helm_binary

CHART = REPO_ROOT / "charts" / "mysocketd"


class HelmError(subprocess.CalledProcessError):
    def __str__(self):
        return f"{' '.join(self.cmd)} exited with {self.returncode}:\n{self.stderr}"


class Helm:
    def __init__(self, home: Path, kubeconfig: Optional[Path] = None):
        self.home = Path(home)
        self.kubeconfig = kubeconfig
        self._values = 0

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HELM_", "KUBE"))}
        env.update(HOME=str(self.home), HELM_CACHE_HOME=str(self.home / "cache"),
                   HELM_CONFIG_HOME=str(self.home / "config"), HELM_DATA_HOME=str(self.home / "data"))
        if self.kubeconfig:
            env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 300.0) -> subprocess.CompletedProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        argv = [str(helm_binary()), *args]
        result = subprocess.run(argv, capture_output=True, text=True, env=self.env(), timeout=timeout,
                                stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise HelmError(result.returncode, ["helm", *args], result.stdout, result.stderr)
        return result

    def values_file(self, values: dict) -> Path:
        """`values` written as a YAML file for `-f`."""
        self.home.mkdir(parents=True, exist_ok=True)
        self._values += 1
        path = self.home / f"values-{self._values}.yaml"
        path.write_text(yaml.safe_dump(values, sort_keys=False))
        return path

    def template(self, release: str, namespace: str, values: dict, chart: Path = CHART) -> list:
        """The chart rendered as `helm template` does (hooks included), as a list of objects."""
        out = self.run("template", release, str(chart), "-n", namespace, "-f", str(self.values_file(values))).stdout
        return [d for d in yaml.safe_load_all(out) if d]

    def status(self, release: str, namespace: str) -> dict:
        return json.loads(self.run("status", release, "-n", namespace, "-o", "json").stdout)
