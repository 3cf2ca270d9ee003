"""Several clinvk hosts on one PostgreSQL and one Redis, behind nginx (deploy/nginx.conf with the
upstream of deploy/several-hosts/nginx-upstream.conf), for the scale-out tests.

Each host is a real ``clinvk serve`` with its own state directory (CLINVK_HOME) on its own port of
127.0.0.1 and its own host name (a UTS namespace: a host cannot tell that another's processes are
gone); what they share is only what an operator's hosts share: the session store URI and the Redis URI.

    with Cluster(tmp_path, postgres_db, redis_url, hosts=3) as cluster:
        cluster.hosts[0].post("/api/v1/prompt", {...})
        requests.get(cluster.nginx.url + "/api/v1/sessions")
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from tests.server_process import ServerProcess
from tests.test_deploy import Nginx

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = ROOT / "deploy" / "several-hosts" / "nginx-upstream.conf"


def several_hosts_upstream(ports: list[int]) -> str:
    """deploy/several-hosts/nginx-upstream.conf with its example hosts replaced by ours."""
    text = UPSTREAM.read_text()
    examples = re.findall(r"^\s*server 10\.0\.0\.\d+:8080[^;]*;\n", text, flags=re.M)
    assert len(examples) >= 2, "deploy/several-hosts/nginx-upstream.conf lost its server lines"
    text = text.replace("".join(examples), "".join(f"    server 127.0.0.1:{p};\n" for p in ports))
    assert "least_conn;" in text
    return text


class ClusterNginx(Nginx):
    """The deploy-test nginx, its upstream block swapped for the several-hosts one."""

    def __init__(self, tmp: Path, ports: list[int]):
        super().__init__(tmp, ports[0])
        site = tmp / "clinvk-site.conf"
        text = site.read_text()
        block = re.search(r"^upstream clinvk \{.*?^\}\n", text, flags=re.M | re.S)
        assert block, "deploy/nginx.conf has no upstream clinvk block"
        site.write_text(text.replace(block.group(0), several_hosts_upstream(ports)))


class Cluster:
    def __init__(self, tmp_path: Path, store_url: str, redis_url: str, *, hosts: int = 3,
                 config: dict[str, Any] | None = None, env: dict[str, str] | None = None, workers: int = 1,
                 nginx: bool = True):
        base = {"session": {"store": store_url, "store_pool_size": 2},
                "server": {"rate_limit_storage_uri": redis_url, "trusted_proxies": ["127.0.0.1"]}}
        for section, values in (config or {}).items():
            base.setdefault(section, {}).update(values)
        self.hosts = [ServerProcess(tmp_path, config=copy.deepcopy(base), env=env, workers=workers,
                                    name=f"host{i + 1}", hostname=f"clinvk-host{i + 1}", start_timeout=60)
                      for i in range(hosts)]
        self.nginx = ClusterNginx(tmp_path / "nginx", [h.port for h in self.hosts]) if nginx else None

    def __enter__(self) -> "Cluster":
        try:
            for host in self.hosts:
                host.start()
            if self.nginx:
                self.nginx.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.nginx:
            self.nginx.stop()
        for host in self.hosts:
            host.stop()
