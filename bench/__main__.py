"""``python -m bench [--quick] [NAME …]``: run benchmarks, print ratios, save JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from .ble_bench import bench_ble
from .bridge_bench import bench_bridge
from .bulk_bench import bench_bulk
from .bundle_bench import bench_bundle
from .cloud_bench import bench_cloud
from .cloud_scale_bench import bench_cloud_scale
from .common import Result, print_results, save_results
from .cpu_bench import bench_cpu
from .flood_bench import bench_flood
from .log_bench import bench_append_and_verify, bench_bytes_per_reading
from .mule_bench import bench_mule
from .mule_ble_bench import bench_mule_ble
from .peerbook_bench import bench_peerbook
from .rss_bench import bench_rss
from .scale_bench import bench_scale
from .serial_bench import bench_serial
from .sync_bench import bench_sync
from .uplink_bench import bench_drain, bench_uplink

BENCHES = {
    "append": bench_append_and_verify,
    "disk": bench_bytes_per_reading,
    "rss": bench_rss,
    "cpu": bench_cpu,
    "scale": bench_scale,
    "flood": bench_flood,
    "serial": bench_serial,
    "peerbook": bench_peerbook,
    "sync": bench_sync,
    "uplink": bench_uplink,
    "cloud": bench_cloud,
    "cloud-scale": bench_cloud_scale,
    "drain": bench_drain,
    "bridge": bench_bridge,
    "ble": bench_ble,
    "bundle": bench_bundle,
    "mule": bench_mule,
    "mule-ble": bench_mule_ble,
    "bulk": bench_bulk,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", help=f"benchmarks to run: {', '.join(BENCHES)} (all)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHES)
    if unknown:
        parser.error(
            f"unknown benchmark(s) {', '.join(sorted(unknown))}; known: {', '.join(BENCHES)}"
        )
    results: list[Result] = []
    for name in args.names or list(BENCHES):
        print(f"running {name} …", flush=True)
        results += BENCHES[name](args.quick)
    print_results(results)
    save_results(results, Path(__file__).parent / "results" / "latest.json")


if __name__ == "__main__":
    main()
