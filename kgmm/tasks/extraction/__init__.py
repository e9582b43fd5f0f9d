"""Train, evaluate and load entity-and-relation extraction models for BC5CDR and CoNLL04.

The trained model is one encoder (the packaged all-MiniLM-L6-v2, fine-tuned) with two heads:

- a BIO tagger over words (the first word piece of each word), with a word-shape embedding beside
  the encoder output (the encoder is uncased) and constrained Viterbi decoding, giving typed spans;
- a pair classifier over entities (mentions grouped by type and normalised text): each entity is the
  log-sum-exp of its mention vectors; a pair adds the pooled context between its closest
  same-sentence mentions, document features (co-occurrence, first sentence, frequency, distance)
  and training-set priors (how often the entities / the pair were related in other training texts,
  counted leave-one-text-out during training); a sigmoid per relation type decides. Candidate pairs
  follow the (head type, tail type) signatures seen in training, within a sentence (CoNLL04) or
  anywhere in the text (BC5CDR).

Both heads train together. The pair head sees gold mentions plus, after the first epoch, the
tagger's own wrong mentions (so it learns to reject them); its loss reaches the encoder scaled by
``relation_encoder_grad`` because at full strength it costs the tagger accuracy. On CPUs with native
bf16 the encoder runs under bf16 autocast (about 2x faster; ``KGMM_BF16=0`` turns it off).

Modules: ``data`` (dataset specs, examples, encoding, lexicon, window collation), ``pairs`` (pair inputs,
features, priors, pair collation), ``decode`` (BIO tags, Viterbi, spans), ``predict`` (:class:`ExtractionModel`,
:func:`load_extraction_model`), ``train`` (:func:`train_extraction`), ``evaluate`` (scores, the spaCy baseline,
:func:`evaluate_extraction`). The network itself is :class:`kgmm.nn.extraction.ExtractionNet`.
"""

from kgmm.tasks.extraction.data import DATASETS, split_sentences
from kgmm.tasks.extraction.evaluate import (
    ExtractionScores,
    evaluate_extraction,
    resolve_cid_pairs,
    score_cid,
    score_span_entities,
    score_text_entities,
    score_text_triples,
)
from kgmm.tasks.extraction.predict import ExtractionModel, load_extraction_model
from kgmm.tasks.extraction.train import train_extraction

__all__ = [
    "DATASETS",
    "ExtractionModel",
    "ExtractionScores",
    "evaluate_extraction",
    "load_extraction_model",
    "resolve_cid_pairs",
    "score_cid",
    "score_span_entities",
    "score_text_entities",
    "score_text_triples",
    "split_sentences",
    "train_extraction",
]
