"""Several KRaft nodes on one machine as one cluster (``fundhub infra up --brokers 3``).

Each node is a ``KafkaNode`` (broker and controller) with its own directory and ports; they
share a cluster id and a static voter set, so losing one leaves a quorum, and topics of
replication factor 3 keep accepting acks=all writes (min.insync.replicas 2). The layout is
fixed by the first broker's port: node *i* listens on ``port + 2i``, its controller on the port
after it, so a bootstrap list of that shape names the cluster and nothing needs recording.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fundhub.cli.devstack.endpoints import HostPort, tcp_reachable
from fundhub.cli.devstack.kafka import DEFAULT_PORT, KafkaNode, KafkaNodeError, new_cluster_id
from fundhub.cli.devstack.paths import data_dir, deploy_dir

CLUSTER_DIR_PREFIX = "kafka-cluster-"


def cluster_addresses(brokers: int, first_port: int, host: str = "127.0.0.1") -> list[HostPort]:
    """The brokers' addresses of a local cluster laid out from ``first_port``."""
    return [HostPort(host, first_port + 2 * i) for i in range(brokers)]


def is_cluster_layout(addresses: list[HostPort]) -> bool:
    """Two or more loopback brokers at ``p, p+2, p+4...``: what ``local_cluster`` runs."""
    if len(addresses) < 2 or not all(a.is_loopback for a in addresses):
        return False
    first = addresses[0].port
    return [a.port for a in addresses] == [first + 2 * i for i in range(len(addresses))]


@dataclass
class KafkaCluster:
    """The nodes of one cluster, started, stopped and waited for together."""

    home: Path
    nodes: list[KafkaNode]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def cluster_id_file(self) -> Path:
        return self.home / "cluster.id"

    def jars_ready(self) -> bool:
        return self.nodes[0].jars_ready()

    def pid(self) -> int | None:
        """A running node's pid (the cluster counts as run by us while any node is)."""
        for node in self.nodes:
            pid = node.pid()
            if pid is not None:
                return pid
        return None

    def is_running(self) -> bool:
        """Every broker accepts connections."""
        return all(tcp_reachable(node.address) for node in self.nodes)

    def prepare(self) -> None:
        """The jars once, and one cluster id for every node (formatting reads it from there)."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.nodes[0].ensure_jars()
        if not self.cluster_id_file.is_file():
            self.cluster_id_file.write_text(new_cluster_id() + "\n", encoding="ascii")
        cluster_id = self.cluster_id_file.read_text(encoding="ascii")
        for node in self.nodes:
            node.home.mkdir(parents=True, exist_ok=True)
            if not node.cluster_id_file.is_file():
                node.cluster_id_file.write_text(cluster_id, encoding="ascii")

    def start(self, *, wait: bool = True, timeout_s: float = 180.0) -> None:
        """Start every node that is not running; with ``wait``, until all serve requests.

        The nodes start together: a node alone cannot elect a controller (it needs a majority
        of the voters), so waiting for one before starting the next would never end."""
        self.prepare()
        for node in self.nodes:
            node.start(wait=False)
        if wait:
            self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        for node in self.nodes:
            node.wait_ready(timeout_s)

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Every node at once. One after another, the last ones would wait out their timeout:
        a node's controlled shutdown asks the quorum, which the earlier ones took away."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            stopped = list(pool.map(lambda node: node.stop(timeout_s), self.nodes))
        return any(stopped)

    def kill(self) -> bool:
        killed = [node.kill() for node in self.nodes]
        return any(killed)


def cluster_nodes(
    home: Path,
    addresses: list[HostPort],
    *,
    deploy: Path,
    jars: Path | None = None,
    heap_min: str = "256m",
    heap_max: str = "512m",
    jvm_options: tuple[str, ...] = (),
) -> KafkaCluster:
    """A cluster of ``len(addresses)`` nodes under ``home`` (``node-1``...), each controller on
    the port after its broker's."""
    voters = ",".join(f"{i + 1}@{a.host}:{a.port + 1}" for i, a in enumerate(addresses))
    nodes = [
        KafkaNode(
            home=home / f"node-{i + 1}",
            deploy=deploy,
            host=address.host,
            port=address.port,
            controller_port=address.port + 1,
            node_id=i + 1,
            heap_min=heap_min,
            heap_max=heap_max,
            jars=jars,
            voters=voters,
            replicas=min(3, len(addresses)),
            jvm_options=jvm_options,
        )
        for i, address in enumerate(addresses)
    ]
    for node in nodes[1:]:  # one copy of the jars, in the first node's directory
        node.jars = nodes[0].libs_dir if jars is None else jars
    return KafkaCluster(home=home, nodes=nodes)


def local_cluster(addresses: list[HostPort]) -> KafkaCluster:
    """The checkout's cluster at ``addresses`` (a ``cluster_addresses`` layout): data in
    ``.data/kafka-cluster-<first port>/``, the jars the single node uses."""
    if not is_cluster_layout(addresses):
        raise KafkaNodeError(
            "a local cluster's brokers are loopback addresses at ports p, p+2, p+4...: "
            + ",".join(str(a) for a in addresses)
        )
    home = data_dir() / f"{CLUSTER_DIR_PREFIX}{addresses[0].port}"
    single = data_dir() / "kafka"
    return cluster_nodes(home, addresses, deploy=deploy_dir() / "kafka", jars=single / "libs")


def default_cluster(brokers: int, first_port: int = DEFAULT_PORT) -> KafkaCluster:
    return local_cluster(cluster_addresses(brokers, first_port))


def running_clusters() -> list[KafkaCluster]:
    """The checkout's clusters with a node running (``fundhub infra down`` stops them)."""
    found: list[KafkaCluster] = []
    with contextlib.suppress(FileNotFoundError):
        for home in sorted(data_dir().glob(f"{CLUSTER_DIR_PREFIX}*")):
            nodes = sorted(home.glob("node-*/server.properties"))
            if not nodes or not home.name.removeprefix(CLUSTER_DIR_PREFIX).isdigit():
                continue
            first = int(home.name.removeprefix(CLUSTER_DIR_PREFIX))
            cluster = local_cluster(cluster_addresses(len(nodes), first))
            if cluster.pid() is not None:
                found.append(cluster)
    return found
