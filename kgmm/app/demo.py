"""The demo: ingest the medical and retail samples shipped in ``data/`` and show what the graph holds."""

from __future__ import annotations

from pathlib import Path

from kgmm.errors import KgmmError

DEMO_INPUTS = {
    "medical": ("medical/notes", "medical/images.jsonl"),
    "retail": ("retail/products.csv", "retail/images.csv"),
}


def find_sample_data(data_dir: str | Path | None = None) -> Path:
    """Return the samples folder: ``data_dir``, else ``./data``, else the repository's ``data/``."""
    candidates = [Path(data_dir)] if data_dir else [Path("data"), Path(__file__).resolve().parents[2] / "data"]
    for candidate in candidates:
        if all((candidate / rel).exists() for inputs in DEMO_INPUTS.values() for rel in inputs):
            return candidate
    raise KgmmError(
        f"sample data not found in {', '.join(str(c) for c in candidates)}; run from a kgmm checkout or pass --data PATH/TO/kgmm/data"
    )


def run_demo(store, data_dir: str | Path | None = None, *, show: int = 3, progress: bool = True) -> dict:
    """Ingest the samples into ``store`` and return stats and the best-connected entities' neighbourhoods."""
    from kgmm.app.answers import neighbourhood, stats_dict
    from kgmm.app.ingest import ingest

    data = find_sample_data(data_dir)
    reports = {}
    for domain, inputs in DEMO_INPUTS.items():
        report = ingest([data / rel for rel in inputs], store, domain=domain, progress=progress)
        reports[domain] = report.to_dict()
    hubs = store.cypher(
        "MATCH (e:Entity)-[r]-(:Entity) RETURN e.id AS id, e.domain AS domain, count(r) AS degree "
        "ORDER BY degree DESC, id LIMIT 50"
    )
    shown, per_domain = [], {}
    for row in hubs:
        if per_domain.get(row["domain"], 0) >= show:
            continue
        per_domain[row["domain"]] = per_domain.get(row["domain"], 0) + 1
        shown.append(neighbourhood(store, row["id"], hops=1, limit=12))
    return {"data": str(data), "ingest": reports, "stats": stats_dict(store), "neighbourhoods": shown}
