"""The classifier heads a model can have, named where the config can read them without importing torch."""

#: ``linear``: a plain linear layer; ``normed``: cosine logits (LDAM's and the expert ensembles' heads).
CLASSIFIERS = ("linear", "normed")
