"""Interactive graph views for notebooks and standalone HTML, drawn by ``neo4j-viz`` (offline: its page inlines
its JavaScript, nothing is fetched at run time).

    from kgmm.app.viz import show, write_html
    show(store.neighbors("medical:disease:influenza", hops=2), store=store)   # in a notebook cell
    show(qa_result, store=store)                                            # an answer's evidence path, highlighted
    write_html(store, "graph.html")                                         # the same view as one HTML file

Nodes are coloured by entity type and sized by degree; clicking one shows its properties: type, domain,
aliases, ontology ids and (given the store) the documents and images that mention it. Edges are labelled by
relation type and carry their confidence, extractor, sources and first sentence. An answer's evidence path
(or any ``highlight`` set of entity ids) is drawn thick and red.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kgmm.errors import MissingDependencyError, ValidationError
from kgmm.schema import Entity, Relation, Subgraph

MAX_NODES = 5_000  # a whole store larger than this is drawn only around chosen entities
HIGHLIGHT = "#f0027f"  # an evidence path: a vivid pink no type colour uses


# Distinct colours for the built-in packs' types (tab20-like); any other type gets a hue from its hash.
_TYPE_COLOURS = {
    "Disease": "#d62728", "Symptom": "#ff7f0e", "Drug": "#1f77b4", "Finding": "#bcbd22", "Anatomy": "#8c564b",
    "Procedure": "#9467bd", "Product": "#17becf", "Brand": "#e377c2", "Category": "#7f7f7f",
    "SubCategory": "#c7c7c7", "ArticleType": "#2ca02c", "Colour": "#ffbb78", "Season": "#98df8a",
    "Usage": "#aec7e8", "Gender": "#c5b0d5", "Person": "#1f77b4", "Organization": "#ff7f0e",
    "Location": "#2ca02c", "Event": "#9467bd", "Work": "#8c564b", "Concept": "#7f7f7f",
}


def type_colour(entity_type: str) -> str:
    """A stable colour per entity type (the same type has the same colour in every view): the built-in packs'
    types have distinct ones; another type gets a hue from its name's hash."""
    if entity_type in _TYPE_COLOURS:
        return _TYPE_COLOURS[entity_type]
    import colorsys

    digest = hashlib.sha256(entity_type.encode("utf-8")).digest()
    red, green, blue = colorsys.hls_to_rgb(int.from_bytes(digest[:2], "big") / 65536, 0.55, 0.6)
    return f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"


def _viz():
    try:
        import neo4j_viz
    except ImportError as e:
        raise MissingDependencyError("neo4j-viz", "notebooks") from e
    return neo4j_viz


def as_subgraph(graph: Any, *, store=None, limit: int = MAX_NODES) -> tuple[Subgraph, set[str], set[tuple]]:
    """``(subgraph, highlighted entity ids, highlighted (head, type, tail) facts)`` for what ``show`` takes:
    a :class:`Subgraph`, a graph store (the whole graph, up to ``limit`` entities), a QA result of
    :meth:`kgmm.tasks.qa.QAModel.ask` (its answers' paths) or a list of entities.

    Raises:
        ValidationError: for anything else, or a store larger than ``limit``.
    """
    if isinstance(graph, Subgraph):
        return graph, set(), set()
    if isinstance(graph, dict) and "answers" in graph:
        return _answer_subgraph(graph, store)
    if hasattr(graph, "iter_entities") and hasattr(graph, "iter_relations"):
        count = graph.stats().entities
        if count > limit:
            raise ValidationError(f"the store holds {count:,} entities, more than a view draws ({limit:,}); show "
                                  "store.neighbors(entity_id, hops=2) or store.subgraph([...]) instead")
        return Subgraph(list(graph.iter_entities()), list(graph.iter_relations())), set(), set()
    if isinstance(graph, list | tuple) and all(isinstance(item, Entity) for item in graph):
        return Subgraph(list(graph), []), set(), set()
    raise ValidationError(f"cannot draw a {type(graph).__name__}: give a Subgraph (store.neighbors(...), "
                          "store.subgraph(...), store.shortest_path(...)), a graph store or a QA result")


def _answer_subgraph(result: dict, store) -> tuple[Subgraph, set[str], set[tuple]]:
    entities: dict[str, Entity] = {}
    relations: dict[tuple, Relation] = {}
    for answer in result["answers"]:
        for fact in answer.get("path", []):
            for key in ("head", "tail"):
                entity = store.get_entity(fact[key]) if store is not None else None
                entities[fact[key]] = entity or Entity(fact[key], fact[f"{key}_name"], "Entity", "")
            relations[(fact["head"], fact["relation"], fact["tail"])] = Relation(
                fact["head"], fact["relation"], fact["tail"], 1.0, "qa", list(fact.get("sources", [])),
                list(fact.get("sentences", [])))
        if not answer.get("path"):
            entities.setdefault(answer["entity"], Entity(answer["entity"], answer["name"], "Entity", ""))
    facts = set(relations)
    return Subgraph(list(entities.values()), list(relations.values())), set(entities), facts


def visualization(graph: Any, *, store=None, highlight: Iterable[str] = (), max_sources: int = 5):
    """Build the ``neo4j_viz.VisualizationGraph`` of ``graph`` (see :func:`as_subgraph` for what it takes).

    Args:
        store: a graph store to read the sources that mention each entity (and, for a QA result, its entities).
        highlight: entity ids to draw in the highlight colour (an answer's path is highlighted already).
        max_sources: sources listed per entity.
    """
    viz = _viz()
    subgraph, marked, facts = as_subgraph(graph, store=store)
    if not subgraph.entities:
        import warnings

        warnings.warn("nothing to draw: the graph is empty (store.neighbors(ID) of an id the store does not hold is "
                      "empty; store.find_entities(NAME)[0].entity.id gives the id of a name)", stacklevel=3)
    marked |= set(highlight)
    degree: dict[str, int] = {}
    for relation in subgraph.relations:
        degree[relation.head] = degree.get(relation.head, 0) + 1
        degree[relation.tail] = degree.get(relation.tail, 0) + 1
    known = {entity.id for entity in subgraph.entities}
    nodes = []
    for entity in subgraph.entities:
        properties: dict[str, Any] = {"id": entity.id, "name": entity.name, "type": entity.type}
        if entity.domain:
            properties["domain"] = entity.domain
        if entity.aliases:
            properties["aliases"] = ", ".join(entity.aliases[:20])
        if entity.ontology_ids:
            properties["ontology ids"] = ", ".join(entity.ontology_ids[:10])
        if store is not None and max_sources > 0:
            mentions = store.mentions(entity.id, limit=max_sources)
            if mentions:
                properties["sources"] = " | ".join(_describe(source, mention) for mention, source in mentions)
        nodes.append(viz.Node(id=entity.id, caption=entity.name,
                              color=HIGHLIGHT if entity.id in marked else type_colour(entity.type),
                              size=min(40, 12 + 2 * degree.get(entity.id, 0)) + (8 if entity.id in marked else 0),
                              properties=properties))
    relationships = []
    for relation in subgraph.relations:
        if relation.head not in known or relation.tail not in known:
            continue
        properties = {"type": relation.type, "confidence": relation.confidence, "extractor": relation.extractor}
        if relation.sources:
            properties["sources"] = ", ".join(relation.sources[:max(1, max_sources)])
        if relation.sentences:
            properties["sentence"] = relation.sentences[0]
        on_path = (relation.head, relation.type, relation.tail) in facts
        style = {"color": HIGHLIGHT, "width": 4} if on_path else {}
        relationships.append(viz.Relationship(id=f"{relation.head}|{relation.type}|{relation.tail}",
                                              source=relation.head, target=relation.tail,
                                              caption=relation.type, properties=properties, **style))
    return viz.VisualizationGraph(nodes=nodes, relationships=relationships)


def _describe(source, mention) -> str:
    kind = "image" if source.kind == "image" else "document"
    title = source.title or source.image_path or source.id
    negated = " (negated)" if mention.negated else ""
    return f"{kind}: {Path(str(title)).name if kind == 'image' else title}{negated}"


def explore(graph: Any, *, store, height: str = "600px", limit: int = 50, **options):
    """An interactive widget of ``graph`` in a notebook: double-click a node to add its neighbours (up to
    ``limit``) from ``store``. ``widget.kgmm_expand(entity_id)`` does the same from code."""
    view = visualization(graph, store=store)
    widget = view.render_widget(height=height, **options)

    def expand(node) -> None:
        entity_id = getattr(node, "id", node)
        if entity_id is None:
            return
        more = visualization(store.neighbors(str(entity_id), hops=1, limit=limit), store=store)
        widget.add_data(nodes=more.nodes, relationships=more.relationships, on_dangling="none",
                        on_duplicate="ignore")

    widget.on_node_event("double_click", expand)
    widget.kgmm_expand = expand
    return widget


def show(graph: Any, *, store=None, highlight: Iterable[str] = (), height: str = "600px", **options):
    """Draw ``graph`` in a notebook (returns the displayable HTML; see :func:`visualization` for the arguments)."""
    return visualization(graph, store=store, highlight=highlight).render(height=height, **options)


def write_html(graph: Any, path: str | Path, *, store=None, highlight: Iterable[str] = (), height: str = "900px",
               **options) -> dict:
    """Write the view of ``graph`` as one standalone HTML file (works offline); return what was written."""
    view = visualization(graph, store=store if store is not None else _store_of(graph), highlight=highlight)
    html = view.render(height=height, **options).data
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return {"format": "html", "path": str(path), "nodes": len(view.nodes), "edges": len(view.relationships)}


def _store_of(graph: Any):
    return graph if hasattr(graph, "iter_entities") and hasattr(graph, "mentions") else None


class CypherResult:
    """The rows of a Cypher query, shown as a table (``_repr_html_``, :meth:`table`) and as a graph (:meth:`show`:
    the entities the rows return and the relations among them)."""

    def __init__(self, store, query: str, rows: list[dict[str, Any]]) -> None:
        self.store, self.query, self.rows = store, query, rows
        self.entity_ids = list(dict.fromkeys(value["id"] for row in rows for value in row.values()
                                             if _is_entity(value)))

    def table(self):
        """The rows as a ``pandas.DataFrame`` (an entity as its name, a relation as its type)."""
        import pandas as pd

        return pd.DataFrame([{key: _cell(value) for key, value in row.items()} for row in self.rows])

    def subgraph(self) -> Subgraph:
        if not self.entity_ids:
            return Subgraph()
        return self.store.subgraph(self.entity_ids, hops=1, limit=len(self.entity_ids))

    def show(self, **options):
        return show(self.subgraph(), store=self.store, **options)

    def _repr_html_(self) -> str:
        return self.table().to_html(index=False, max_rows=200)

    def __len__(self) -> int:
        return len(self.rows)


def _is_entity(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("id"), str) and "name" in value and "type" in value


def _cell(value: Any) -> Any:
    if _is_entity(value):
        return value["name"]
    if isinstance(value, dict):
        if "_LABEL" in value:
            return value["_LABEL"]
        return {k: v for k, v in value.items() if not str(k).startswith("_")}
    return value


def cypher(store, query: str, parameters: dict[str, Any] | None = None, *, write: bool = False) -> CypherResult:
    """Run ``query`` on ``store`` (embedded or Neo4j; read-only unless ``write``) and return a :class:`CypherResult`
    (a table in a notebook; ``.show()`` draws it)."""
    return CypherResult(store, query, store.cypher(query, parameters, write=write))


def load_ipython_extension(ipython) -> None:
    """``%load_ext kgmm.app.viz`` adds the ``%%cypher`` cell magic: ``%%cypher STORE`` (a store object in the
    notebook, a folder or a bolt:// URI; default ``$KGMM_STORE``) then the query; shows the table and the graph."""
    import os

    from IPython.display import display

    opened: dict[str, Any] = {}

    def cypher_magic(line: str, cell: str):
        target = line.strip() or os.environ.get("KGMM_STORE", "")
        if not target:
            raise ValidationError("name the store: %%cypher my_store (a variable, a folder or a bolt:// URI)")
        store = ipython.user_ns.get(target)
        if store is None or not hasattr(store, "cypher"):
            if target not in opened:
                from kgmm.store import open_store

                opened[target] = open_store(target)
            store = opened[target]
        result = cypher(store, cell)
        display(result)
        if result.entity_ids:
            display(result.show())
        return None

    ipython.register_magic_function(cypher_magic, magic_kind="cell", magic_name="cypher")


__all__ = ["HIGHLIGHT", "MAX_NODES", "CypherResult", "as_subgraph", "cypher", "explore", "load_ipython_extension", "show",
           "type_colour", "visualization", "write_html"]
