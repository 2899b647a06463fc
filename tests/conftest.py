import pytest


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from tests.model_factory import build_tokenizer  # imports torch: only when a test needs it

    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    """A random two-layer multi-query model with SantaCoder's special tokens, on disk."""
    from tests.model_factory import build_model_dir

    return build_model_dir(tmp_path_factory.mktemp("tiny-random"), tiny_tokenizer)


@pytest.fixture(scope="session")
def engine_factory(tiny_model_dir):
    from model_runtime import LoadOptions, load_engine

    def make(**overrides):
        options = dict(model=str(tiny_model_dir), device="cpu")
        options.update(overrides)
        return load_engine(LoadOptions(**options))

    return make


@pytest.fixture()
def engine(engine_factory):
    return engine_factory()
