"""Data: corpora (acquire, clean, cache), tokenizers, token shards and samplers.

    prepare_dataset(corpus, out_dir, ...)   corpus name or user path -> a prepared dataset directory
    TokenDataset(path)                       open one: splits (train, validation, test), transfer sets, subsets,
                                             evaluation sets (`eval_set`: windows over every document, with a
                                             document-clustered standard error)
    WindowSampler(tokens, n_ctx, B, seed)    random training windows, epoch counting
"""

from scalinglab.data.shards import EvalSet, TokenDataset, WindowSampler, write_dataset

__all__ = ["EvalSet", "TokenDataset", "WindowSampler", "write_dataset", "prepare_dataset"]


def __getattr__(name):
    # Lazy: training code that only reads shards need not import the tokenizer stack.
    if name == "prepare_dataset":
        from scalinglab.data.prepare import prepare_dataset

        return prepare_dataset
    raise AttributeError(name)
