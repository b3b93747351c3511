"""imgsim.split and imgsim.run (placeholder while the library's split call lands)."""


def split(dataset, test_size=0.2, seed=42):
    raise NotImplementedError


def run(dataset, model, out, **kw):
    raise NotImplementedError
