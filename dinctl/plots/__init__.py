"""The paper's §6.8 figures for any trained run, one module per figure: attention weights
(Fig. 5, `attention`), a t-SNE of the learned item embeddings (Fig. 6, `tsne`) and training
curves (Fig. 4 style, `curves`); `common` holds what they share.

Importing this package imports neither torch nor matplotlib; the figure modules do when used.
"""
