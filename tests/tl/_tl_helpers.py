"""Shared settings of the tl tests (imported by name: pytest puts this folder on sys.path)."""

FIT_KW = dict(
    n_top_genes=20,
    encoder="test_resnet",
    pretrained=False,
    config="cpu",
    max_epochs=2,
    batch_size=32,
    patience=None,
    progress=False,
)
