"""Graph commands: ingest, stats, search, neighbors, path, cypher, export."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from kgmm.cli.output import (
    DatabaseOption,
    JsonOption,
    StoreOption,
    UserOption,
    console,
    emit,
    open_any_store,
    open_existing_store,
    store_location,
)
from kgmm.sources import FORMATS


def render_stats(result: dict) -> None:
    from rich.table import Table

    table = Table(title=f"Graph at {result['store']}", show_header=False)
    for key in ("entities", "relations", "documents", "images", "mentions"):
        table.add_row(key, f"{result[key]:,}")
    if result.get("retrieved_links"):
        table.add_row("  of which retrieved (image links)", f"{result['retrieved_links']:,}")
    for key, label in (("entities_by_type", "entities"), ("relations_by_type", "relations")):
        for name, count in sorted(result[key].items(), key=lambda kv: -kv[1]):
            table.add_row(f"  {label}: {name}", f"{count:,}")
    console().print(table)


def _source_label(evidence: dict) -> str:
    source = evidence["source"]
    title = source.get("title") or source.get("origin") or source.get("id")
    kind = source.get("kind", "source")
    sentence = evidence.get("sentence") or ""
    if len(sentence) > 110:
        sentence = sentence[:107] + "..."
    return f"[{kind}: {title}] {sentence}"


def render_facts(relations: list[dict]) -> None:
    out = console()
    for relation in relations:
        out.print(
            f"  [bold]{relation['head_name']}[/] -[cyan]{relation['type']}[/]-> [bold]{relation['tail_name']}[/]"
            f"  (conf {relation['confidence']:.2f}, {relation['extractor']}, {relation['evidence_count']} source(s))",
            highlight=False,
        )
        for evidence in relation["evidence"]:
            out.print(f"      {_source_label(evidence)}", highlight=False, markup=False)


def render_neighbourhood(result: dict) -> None:
    entity = result["entity"]
    out = console()
    out.print(f"[bold]{entity['name']}[/] ({entity['type']}, {entity['id']}) — {len(result['entities']) - 1} neighbour(s) within {result['hops']} hop(s)", highlight=False)
    if entity["aliases"]:
        out.print(f"  aliases: {', '.join(entity['aliases'][:8])}", highlight=False, markup=False)
    render_facts(result["relations"])


def render_search(result: dict) -> None:
    out = console()
    if not result["results"]:
        from kgmm.utils import shorten

        out.print(f"no entity matches {shorten(result['query'])!r}", markup=False)
    for match in result["results"]:
        out.print(f"[bold]{match['name']}[/] ({match['type']}, {match['id']}) score {match['score']:.2f} via {match['matched']!r}", highlight=False)
        for mention in match["mentions"]:
            flag = " [negated]" if mention["negated"] else " [uncertain]" if mention["uncertain"] else ""
            if mention.get("provenance") == "retrieved":
                flag = f" [retrieved link, similarity {mention['confidence']:.2f}]"
            out.print(f"    {_source_label({'source': mention['source'], 'sentence': mention['sentence']})}{flag}", highlight=False, markup=False)


def render_cross_modal(result: dict) -> None:
    out = console()
    query = result["query"]
    out.print(f"nearest to {'image ' + query['image'] if 'image' in query else repr(query['text'])} "
              f"(alignment model {result['model']}):", markup=False, highlight=False)
    for kind in ("entities", "documents", "images"):
        if kind not in result:
            continue
        out.print(f"[bold]{kind}[/]" + ("" if result[kind] else ": none in the store"))
        for item in result[kind]:
            if kind == "entities":
                label = f"{item['name']} ({item['type']}, {item['id']})"
            elif kind == "documents":
                label = f"{item['title'] or item['origin']}: {item['snippet'][:80]}"
            else:
                label = f"{item['path']}" + (f" — {item['caption'][:80]}" if item["caption"] else " (no caption)")
            out.print(f"  {item['score']:.3f}  {label}", markup=False, highlight=False)


def render_path(result: dict) -> None:
    out = console()
    if not result["found"]:
        out.print(f"no path between {result['source']['name']} and {result['target']['name']}", markup=False)
        return
    out.print(f"path from {result['source']['name']} to {result['target']['name']} ({len(result['relations'])} step(s)):", markup=False)
    render_facts(result["relations"])


def render_rows(result: dict) -> None:
    from rich.table import Table

    rows = result["rows"]
    if not rows:
        console().print("(no rows)")
        return
    table = Table(*rows[0].keys())
    for row in rows[:200]:
        table.add_row(*(str(v) for v in row.values()))
    console().print(table)
    if len(rows) > 200:
        console().print(f"... {len(rows) - 200} more rows (use --json for all)")


def ingest(
    paths: list[Path] = typer.Argument(..., help="Files or folders: text, JSONL, CSV, image manifests, known data sets."),
    domain: str = typer.Option("general", "--domain", "-d", help="general, medical, retail, or a pack folder."),
    store: str | None = StoreOption,
    user: str | None = UserOption,
    database: str | None = DatabaseOption,
    fmt: str = typer.Option("auto", "--format", "-f", help=f"Input format: {', '.join(FORMATS)} (auto: detected "
                            "per path from its suffix and layout)."),
    text_column: str | None = typer.Option(None, "--text-column", help="Text column of JSONL/CSV input."),
    limit: int | None = typer.Option(None, "--limit", help="Read at most this many sources."),
    batch_size: int = typer.Option(256, "--batch-size", help="Most sources extracted and written together (a "
                                   "batch also ends at 400,000 characters, so memory stays bounded)."),
    model: Path | None = typer.Option(None, "--model", "-m", help="A model from `kgmm train extraction` to add its entities and relations."),
    align_model: Path | None = typer.Option(None, "--align-model", help="An alignment model (`kgmm train align`; "
                                            "default $KGMM_ALIGN_MODEL): images without a caption are linked to "
                                            "their nearest entities (provenance 'retrieved')."),
    reextract: bool = typer.Option(False, "--reextract", help="Extract sources already stored again, replacing "
                                   "what their earlier extraction added (to apply another --domain or --model, or "
                                   "to rebuild entities deleted by hand)."),
    as_json: bool = JsonOption,
) -> None:
    """Extract entities and relations from PATHS and add them to the store (committed batch by batch; Ctrl-C
    keeps what was committed, and running the command again goes on)."""
    from kgmm.app.ingest import IngestInterrupted, plan_ingest

    plan = plan_ingest(paths, domain=domain, fmt=fmt, text_column=text_column, limit=limit, batch_size=batch_size,
                       model_dir=model, align_model=align_model,
                       on_problem=lambda problem: print(f"warning: {problem}", file=sys.stderr))
    with open_any_store(store_location(store), user, database) as graph_store:
        try:
            report = plan.run(graph_store, reextract=reextract)
        except IngestInterrupted as interrupted:
            print(f"interrupted: committed {interrupted.report.summary(graph_store.uri)}; the batch in progress "
                  "was not written: run the same command again to go on", file=sys.stderr)
            raise typer.Exit(130) from None
        result = {"store": graph_store.uri, **report.to_dict()}
        for other, count in sorted(report.other_domains.items()):
            print(f"warning: {count:,} source(s) already stored were extracted with the {other!r} pack, not "
                  f"{report.domain!r}, and were left as they are; pass --reextract to extract them again with "
                  f"{report.domain!r}", file=sys.stderr)
    emit(result, as_json, _render_ingest)


def repair(
    store: str | None = StoreOption,
    user: str | None = UserOption,
    database: str | None = DatabaseOption,
    domain: str | None = typer.Option(None, "--domain", "-d", help="Extract with this pack instead of the one "
                                      "each source was extracted with."),
    every_source: bool = typer.Option(False, "--all", help="Extract every stored source again, not only those "
                                      "whose entities are gone."),
    as_json: bool = JsonOption,
) -> None:
    """Rebuild the graph of stored sources whose entities are gone (deleted with `kgmm cypher --write`, say),
    from the text the store keeps: no input files needed."""
    from kgmm.app.ingest import repair as run_repair

    with open_existing_store(store, user, database, read_only=False) as graph_store:
        report = run_repair(graph_store, domain=domain, every_source=every_source,
                            on_problem=lambda problem: print(f"warning: {problem}", file=sys.stderr))
        result = {"store": graph_store.uri, **report.to_dict()}
    emit(result, as_json, _render_ingest)


def stats(
    store: str | None = StoreOption,
    user: str | None = UserOption,
    database: str | None = DatabaseOption,
    as_json: bool = JsonOption,
) -> None:
    """Count entities, relations, documents, images and mentions."""
    from kgmm.app.answers import stats_dict

    with open_existing_store(store, user, database) as graph_store:
        emit(stats_dict(graph_store), as_json, render_stats)


def search(
    name: str | None = typer.Argument(None, help="Entity name or alias (case and small typos tolerated); "
                                      "with --images or --model, any text query."),
    store: str | None = StoreOption,
    user: str | None = UserOption,
    database: str | None = DatabaseOption,
    limit: int = typer.Option(10, "--limit", "-n"),
    image: Path | None = typer.Option(None, "--image", help="Search with a photo: nearest entities, documents "
                                      "and captioned images (needs an alignment model)."),
    images: bool = typer.Option(False, "--images", help="Return images matching the text query."),
    model: Path | None = typer.Option(None, "--model", "-m", help="Alignment model from `kgmm train align` "
                                      "(default $KGMM_ALIGN_MODEL), for --image, --images or a text query."),
    as_json: bool = JsonOption,
) -> None:
    """Find entities by name and show where they are mentioned; or search across modalities (--image, --images)."""
    from kgmm.errors import ValidationError

    cross_modal = image is not None or images or model is not None
    if image is not None and name:
        raise ValidationError("give either a text query or --image, not both")
    if not cross_modal:
        if not name or not name.strip():
            raise ValidationError("give a name to search for (or --image PATH to search with a photo)")
        from kgmm.app.answers import search as run_search

        with open_existing_store(store, user, database) as graph_store:
            emit(run_search(graph_store, name, limit=limit), as_json, render_search)
        return
    from kgmm.tasks.crossmodal import KINDS, cross_modal_search

    kinds = ("images",) if images else KINDS
    with open_existing_store(store, user, database) as graph_store:
        result = cross_modal_search(graph_store, model=model, image=image, text=name, kinds=kinds, limit=limit)
    emit(result, as_json, render_cross_modal)


def link_images(
    store: str | None = StoreOption,
    user: str | None = UserOption,
    database: str | None = DatabaseOption,
    model: Path | None = typer.Option(None, "--model", "-m", help="Alignment model from `kgmm train align` "
                                      "(default $KGMM_ALIGN_MODEL)."),
    per_image: int = typer.Option(3, "--per-image", "-k", help="At most this many entities per image."),
    min_score: float = typer.Option(0.3, "--min-score", help="Only links at least this similar (cosine)."),
    entity_type: list[str] | None = typer.Option(None, "--type", help="Link only to entities of this type "
                                                 "(repeatable)."),
    as_json: bool = JsonOption,
) -> None:
    """Link images stored without a caption to their nearest entities (provenance "retrieved")."""
    from kgmm.tasks.crossmodal import link_uncaptioned_images

    with open_existing_store(store, user, database, read_only=False) as graph_store:
        result = link_uncaptioned_images(graph_store, model=model, per_image=per_image, min_score=min_score,
                                         entity_types=entity_type or None)
    emit(result, as_json, lambda r: console().print(
        f"{r['images']} image(s) without a caption; {r['linked']} linked, {r['links']} new link(s) "
        f"(provenance 'retrieved')" + (f"; {len(r['skipped'])} skipped: image file missing" if r["skipped"] else ""),
        markup=False, highlight=False))


def neighbors(
    name: str = typer.Argument(..., help="Entity name, alias or id."),
    store: str | None = StoreOption,
    user: str | None = UserOption,
    database: str | None = DatabaseOption,
    hops: int = typer.Option(1, "--hops", "-k", help="Neighbourhood radius (1-4)."),
    limit: int = typer.Option(50, "--limit", "-n", help="At most this many entities."),
    as_json: bool = JsonOption,
) -> None:
    """Show an entity's neighbourhood and the sources of each fact."""
    from kgmm.app.answers import neighbourhood

    with open_existing_store(store, user, database) as graph_store:
        emit(neighbourhood(graph_store, name, hops=hops, limit=limit), as_json, render_neighbourhood)


def path(
    source: str = typer.Argument(..., help="First entity."),
    target: str = typer.Argument(..., help="Second entity."),
    store: str | None = StoreOption,
    user: str | None = UserOption,
    database: str | None = DatabaseOption,
    max_hops: int = typer.Option(4, "--max-hops"),
    as_json: bool = JsonOption,
) -> None:
    """Show a shortest chain of facts between two entities."""
    from kgmm.app.answers import path_between

    with open_existing_store(store, user, database) as graph_store:
        emit(path_between(graph_store, source, target, max_hops=max_hops), as_json, render_path)


def cypher(
    query: str = typer.Argument(..., help="A Cypher query; pass values as $name with --param name=value."),
    store: str | None = StoreOption,
    user: str | None = UserOption,
    database: str | None = DatabaseOption,
    param: list[str] = typer.Option([], "--param", "-p", help="Query parameter NAME=VALUE (repeatable)."),
    write: bool = typer.Option(False, "--write", help="Let the query change the store (by default the database "
                               "refuses any write, and the query runs even while an ingest holds the write lock)."),
    as_json: bool = JsonOption,
) -> None:
    """Run one Cypher statement against the store: read-only unless --write."""
    from kgmm.errors import ValidationError

    parameters = {}
    for item in param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValidationError(f"--param expects NAME=VALUE, got {item!r}")
        parameters[key] = _parse_value(value)
    with open_existing_store(store, user, database, read_only=not write) as graph_store:
        rows = graph_store.cypher(query, parameters, write=write)
    emit({"query": query, "rows": rows}, as_json, render_rows)


def export(
    fmt: str = typer.Option("graphml", "--format", "-f", help="networkx (pickle), graphml, pyg or html (an "
                            "interactive view, offline) (with --out)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output file."),
    around: str | None = typer.Option(None, "--around", help="html: draw only this entity's neighbourhood "
                                      "(a name or id)."),
    hops: int = typer.Option(2, "--hops", help="html with --around: how far around it."),
    to: str | None = typer.Option(None, "--to", help="Copy the store into this store (a folder or bolt:// URI) instead."),
    from_: str | None = typer.Option(None, "--from", help="Copy this store (a folder or bolt:// URI) into --store instead."),
    store: str | None = StoreOption,
    user: str | None = UserOption,
    database: str | None = DatabaseOption,
    batch_size: int = typer.Option(10_000, "--batch-size", help="Records per write when copying between stores."),
    as_json: bool = JsonOption,
) -> None:
    """Export the graph to a file (networkx, GraphML for Gephi/yEd, PyTorch Geometric, an interactive HTML view), or
    copy it to another store."""
    from kgmm.errors import ValidationError

    if sum(option is not None for option in (out, to, from_)) != 1:
        raise ValidationError("give exactly one of --out FILE, --to STORE or --from STORE")
    if out is not None:
        from kgmm.app.export import export_graph

        with open_existing_store(store, user, database) as graph_store:
            subgraph = None
            if around is not None:
                matches = graph_store.find_entities(around, limit=1)
                if not matches:
                    raise ValidationError(f"no entity named {around!r} in the store; check with `kgmm search`")
                subgraph = graph_store.neighbors(matches[0].entity.id, hops=hops)
            result = export_graph(graph_store, fmt, out, around=subgraph)
        emit(result, as_json, lambda r: console().print(f"wrote {r['nodes']:,} nodes and {r['edges']:,} edges to {r['path']} ({r['format']})", markup=False))
        return
    from kgmm.store.transfer import copy_store

    source_location, target_location = (store, to) if to is not None else (from_, store_location(store))
    with open_existing_store(source_location, user, database) as source, \
            open_any_store(target_location, user, database) as target:
        result = copy_store(source, target, batch_size=batch_size, progress=sys.stderr.isatty() and not as_json)
    emit(result, as_json, _render_copy)


def register(app: typer.Typer) -> None:
    """Add the graph commands: ingest, repair, stats, search, link-images, neighbors, path, cypher, export."""
    app.command()(ingest)
    app.command()(repair)
    app.command()(stats)
    app.command()(search)
    app.command("link-images")(link_images)
    app.command()(neighbors)
    app.command()(path)
    app.command()(cypher)
    app.command()(export)


def _parse_value(value: str):
    import json

    try:
        return json.loads(value)
    except ValueError:
        return value


def _render_ingest(result: dict) -> None:
    out = console()
    reextracted = f", {result['sources_reextracted']:,} extracted again" if result["sources_reextracted"] else ""
    out.print(
        f"ingested {result['sources_new']:,} new source(s) ({result['sources_known']:,} already stored{reextracted}) "
        f"into {result['store']} with the {result['domain']!r} pack: +{result['entities_new']:,} entities, "
        f"+{result['relations_new']:,} relations, +{result['mentions_new']:,} mentions in {result['seconds_total']:.1f}s",
        markup=False, highlight=False,
    )
    if result["problems"]:
        out.print(f"{len(result['problems'])} input problem(s) skipped (see warnings above)", markup=False)
    links = result.get("image_links")
    if links:
        out.print(f"{links['images']} image(s) without a caption: {links['linked']} linked to their nearest entities "
                  f"({links['links']} new link(s), provenance 'retrieved')", markup=False)


def _render_copy(result: dict) -> None:
    counts = result["copied"]
    console().print(
        f"copied {counts['entities']:,} entities, {counts['relations']:,} relations, {counts['mentions']:,} mentions and "
        f"{counts['sources']:,} sources from {result['from']} to {result['to']}; counts checked: "
        f"{result['to']} now holds {result['target_stats']['entities']:,} entities and {result['target_stats']['relations']:,} relations",
        markup=False,
    )
