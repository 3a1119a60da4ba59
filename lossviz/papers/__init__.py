"""One module per paper of the reading list, named after its notebook (``papers.unpg`` for
notebooks/02_unpg_negative_pairs): the paper's loss and its weights, then its experiment, then its
pictures and panels. A paper module imports only the core (``lossviz.*``), never another paper
module: what two papers share lives in the core. Import one as ``from lossviz.papers import unpg``.
"""
