"""Choosing a Ray cluster: addresses, what the cluster has, refusals, %cluster and
%accelerators, against the session's real local Ray head (tests/ray_cluster.py)."""

from __future__ import annotations

import re
import time

import pytest
from helpers import wait_for

import jupyter_ext
from jupyter_ext.cluster import (
    ClusterAddress,
    ClusterRequestError,
    ClusterUnreachable,
    check_request,
    cluster_info,
    current_cluster,
    parse_address,
    use_cluster,
)
from jupyter_ext.cluster.head import free_port

pytestmark = pytest.mark.cluster


@pytest.fixture(autouse=True)
def _local_after():
    yield
    use_cluster(None)


# -- addresses (no cluster needed) ---------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "dashboard", "client"),
    [
        ("http://10.0.0.5:8265", "http://10.0.0.5:8265", "ray://10.0.0.5:10001"),
        ("  HTTP://head:8265/ ", "http://head:8265", "ray://head:10001"),
        ("10.0.0.5:8265", "http://10.0.0.5:8265", "ray://10.0.0.5:10001"),
        (
            "https://ray.example.com/dash",
            "https://ray.example.com/dash",
            "ray://ray.example.com:10001",
        ),
        ("ray://head:10002", "http://head:8265", "ray://head:10002"),
        ("ray://head", "http://head:8265", "ray://head:10001"),
        ("http://[::1]:8265", "http://[::1]:8265", "ray://[::1]:10001"),
    ],
)
def test_parse_address_forms(text, dashboard, client):
    addr = parse_address(text)
    assert (addr.dashboard, addr.client, addr.text) == (dashboard, client, text)
    assert str(addr) == dashboard


def test_parse_address_client_override_and_errors():
    addr = parse_address("http://head:8265", client="ray://10.1.1.1:20001")
    assert addr == ClusterAddress("http://head:8265", "ray://10.1.1.1:20001", "http://head:8265")
    cases = {
        "": "the cluster address is empty",
        "headnode": r"without a scheme give HOST:PORT, e\.g\. http://headnode:8265",
        "head:port": r"no valid port \(a number from 1 to 65535\)",
        "http://head:99999": "no valid port",
        "gcs://head:6379": r"gcs:// is not one of http://HOST:8265",
        "http://:8265": "names no host",
        "http://head:8265?x=1": "query or fragment",
        "local": r"'local' is this machine, not a cluster address: use_cluster\('local'\)",
    }
    for text, message in cases.items():
        with pytest.raises(ValueError, match=message):
            parse_address(text)
    with pytest.raises(ValueError, match=r"must look like ray://HOST:10001; got 'http://x:1'"):
        parse_address("http://head:8265", client="http://x:1")
    with pytest.raises(ValueError, match="already a Ray Client address"):
        parse_address("ray://head:10001", client="ray://other:10001")
    with pytest.raises(ValueError, match="is text such as"):
        parse_address(8265)  # type: ignore[arg-type]


# -- against the real head ------------------------------------------------------------------
def test_cluster_info_of_the_local_head(ray_head):
    import ray

    cluster_info(ray_head.dashboard)  # the first call imports Ray's clients
    t0 = time.perf_counter()
    info = cluster_info(ray_head.dashboard, timeout=5)
    elapsed = time.perf_counter() - t0
    print(f"\nhead ready in {ray_head.start_s:.1f} s; cluster_info took {elapsed * 1000:.0f} ms")
    assert elapsed < 2.0  # three small HTTP requests; shown by a magic
    assert info.ray_version == ray.__version__
    assert info.address.dashboard == ray_head.dashboard
    (node,) = info.nodes
    assert node.alive and node.head and node.cpus == 2 and node.gpus == 0
    assert node.gpu_type is None and node.memory > 0 and node.ip
    assert (info.cpus, info.gpus, info.gpus_by_type) == (2, 0, {})
    # What is in use is reported by the cluster a few seconds after it starts (and after
    # the jobs of earlier tests on this shared head have given their CPUs back).
    info = wait_for(
        lambda: (i := cluster_info(ray_head.dashboard)).cpus_free == 2 and i,
        timeout=60,
        what="the cluster to report its 2 CPUs free",
    )
    assert info.cpus_free == 2 and info.nodes[0].memory_free == info.nodes[0].memory
    assert re.fullmatch(
        r"1 node, 2 CPUs \(2 free\), 0 GPUs, \d+\.\d GiB memory \(\d+\.\d GiB free\)",
        info.summary(),
    ), info.summary()
    frame = info.frame()
    assert frame.loc[0, ["role", "state", "cpus", "gpus"]].tolist() == ["head", "alive", 2, 0]


def test_refusals_say_what_the_cluster_has(ray_head):
    info = cluster_info(ray_head.dashboard)
    where = f"the cluster at {ray_head.dashboard}"
    for accelerator in ("gpu", "cuda"):
        with pytest.raises(ClusterRequestError) as refused:
            check_request(info, accelerator=accelerator, devices=1, num_nodes=1)
        assert str(refused.value) == (
            f"{where} has no GPU (1 node: 2 CPUs, 0 GPUs); use --accelerator cpu or add GPU nodes"
        )
    with pytest.raises(
        ClusterRequestError, match=r"asks for 3 CPU worker processes .* has only 2 CPUs"
    ):
        check_request(info, accelerator="cpu", devices=3, num_nodes=1)
    with pytest.raises(
        ClusterRequestError, match=r"devices=2 x num_nodes=2\) .*--devices 2 --num-nodes 1"
    ):
        check_request(info, accelerator="auto", devices="2", num_nodes=2)
    # what fits is let through; auto on a cluster without GPUs means CPU processes
    check_request(info, accelerator="cpu", devices=2, num_nodes=1)
    check_request(info, accelerator="auto", devices="auto", num_nodes=1)
    with pytest.raises(ValueError, match="accelerator='mps' cannot run on a Ray cluster"):
        check_request(info, accelerator="mps", devices=1, num_nodes=1)
    with pytest.raises(ValueError, match="on CPU, devices is a number of processes"):
        check_request(info, accelerator="cpu", devices=[0, 1], num_nodes=1)
    with pytest.raises(ValueError, match="devices='two' is not understood"):
        check_request(info, accelerator="cpu", devices="two", num_nodes=1)
    with pytest.raises(ValueError, match="num_nodes=0 is not a number of nodes"):
        check_request(info, accelerator="cpu", devices=1, num_nodes=0)


def test_gpu_refusals_on_a_gpu_cluster(ray_head):
    # The head has no GPU: the GPU nodes of a bigger cluster, as cluster_info reads them.
    from dataclasses import replace

    from jupyter_ext.cluster import NodeInfo

    info = cluster_info(ray_head.dashboard)
    a100 = NodeInfo("n1", "10.0.0.1", "gpu-a", True, False, 32, 2, 2**37, gpu_type="A100")
    t4 = NodeInfo("n2", "10.0.0.2", "gpu-b", True, False, 8, 1, 2**35, gpu_type="T4")
    dead = replace(a100, node_id="n3", name="gpu-c", alive=False)
    info = replace(info, nodes=(*info.nodes, a100, t4, dead))
    assert info.gpus_by_type == {"A100": 2, "T4": 1}
    assert "3 GPUs (2 A100, 1 T4" in info.summary() and "3 nodes (1 dead)" in info.summary()
    with pytest.raises(ClusterRequestError) as refused:
        check_request(info, accelerator="gpu", devices=4, num_nodes=1)
    assert "asks for 4 GPUs per node but no node of the cluster at" in str(refused.value)
    assert "gpu-a: 2 A100, gpu-b: 1 T4" in str(refused.value)
    assert "use --devices 2 or fewer" in str(refused.value)
    with pytest.raises(
        ClusterRequestError, match=r"asks for 2 nodes with 2 GPUs each .* has 1 such node"
    ):
        check_request(info, accelerator="cuda", devices=[0, 1], num_nodes=2)
    check_request(info, accelerator="gpu", devices=1, num_nodes=2)
    check_request(info, accelerator="auto", devices=-1, num_nodes=2)


def test_use_cluster_selects_and_goes_back(ray_head):
    assert current_cluster() is None
    info = use_cluster(ray_head.dashboard, client=ray_head.client)
    assert current_cluster() == ClusterAddress(
        ray_head.dashboard, ray_head.client, ray_head.dashboard
    )
    text = str(info)
    assert text.startswith(
        f"Runs of this kernel go to the Ray cluster at {ray_head.dashboard}: 1 node, 2 CPUs"
    )
    assert re.search(r"^  \S+ +head +alive +\S+/2 +\S+/0 ", text, re.M), text
    html = info._repr_html_()
    assert "Runs of this kernel go to the Ray cluster at" in html and "<table" in html
    assert ">CPUs</th>" in html and ">alive</span>" in html

    # an unreachable address is refused at once, with what to check; the selection stays
    dead = f"http://127.0.0.1:{free_port()}"
    t0 = time.perf_counter()
    with pytest.raises(ClusterUnreachable) as refused:
        jupyter_ext.use_cluster(dead)
    assert time.perf_counter() - t0 < 2.0
    message = str(refused.value)
    assert message.startswith(f"no Ray cluster answers at {dead} (connection refused)")
    assert (
        "dashboard port (8265" in message and "ray start --head --dashboard-host 0.0.0.0" in message
    )
    assert isinstance(refused.value, ConnectionError)
    assert current_cluster().dashboard == ray_head.dashboard

    # shown for another cluster than the selected one, it says where runs go
    use_cluster("local")
    assert current_cluster() is None
    assert str(cluster_info(ray_head.dashboard)).startswith(
        f"The Ray cluster at {ray_head.dashboard}: 1 node"
    ) and "(runs of this kernel go to this machine)" in str(cluster_info(ray_head.dashboard))


def test_auto_finds_the_cluster_as_ray_does(ray_head, monkeypatch):
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ADDRESS", ray_head.gcs)  # a bootstrap (GCS) address, as Ray sets it
    addr = parse_address("auto")
    assert addr.text == "auto"
    assert addr.dashboard == ray_head.dashboard
    monkeypatch.setenv("RAY_ADDRESS", ray_head.dashboard)
    assert parse_address("auto", client=ray_head.client) == ClusterAddress(
        ray_head.dashboard, ray_head.client, "auto"
    )


def test_magics_in_a_real_kernel(start_kernel, ray_head):
    k = start_kernel()
    cell = k.run("%cluster").ok()
    assert "Runs of this kernel run on this machine." in cell.text
    cell = k.run(f"%cluster {ray_head.dashboard} --client {ray_head.client}").ok()
    assert f"Runs of this kernel go to the Ray cluster at {ray_head.dashboard}: 1 node" in cell.text
    assert "<table" in cell.data[0]["text/html"]
    k.run(
        "from jupyter_ext.cluster import current_cluster\n"
        f"assert current_cluster().client == {ray_head.client!r}"
    ).ok()
    cell = k.run("%cluster").ok()
    assert f"go to the Ray cluster at {ray_head.dashboard}" in cell.text

    # %accelerators lists the cluster's devices while it is selected
    cell = k.run("%accelerators").ok()
    assert "these are its devices (%cluster local goes back to this machine's)" in cell.text
    assert re.search(r"head +alive +\S+/2 ", cell.text), cell.text
    k.run("df = %accelerators --list\nassert df.cpus.tolist() == [2.0], df").ok()

    # refusals are one clear line and change nothing
    cell = k.run(f"%cluster http://127.0.0.1:{free_port()}")
    assert "UsageError" in cell.text and "no Ray cluster answers at" in cell.text
    cell = k.run("%cluster headnode")
    assert "UsageError" in cell.text and "e.g. http://headnode:8265" in cell.text
    k.run(f"assert current_cluster().dashboard == {ray_head.dashboard!r}").ok()

    cell = k.run("%cluster local").ok()
    assert "Runs of this kernel run on this machine again." in cell.text
    k.run("assert current_cluster() is None").ok()
    cell = k.run("df = %accelerators --list\nassert 'memory_total_mb' in df.columns").ok()
