/*
 * internal.h — interfaces between the encoder's own files. Not installed, not for other modules:
 * they use sbert.h.
 */
#ifndef SBERT_INTERNAL_H
#define SBERT_INTERNAL_H

#include "sbert.h"

/* ---- tokenizer.c: vocabulary + HF BertTokenizerFast rules ---------------------------------- */

typedef struct sbert_tokenizer sbert_tokenizer;

struct sbert_tokenizer_config {
    int do_lower_case;          /* tokenizer_config.json do_lower_case (default 1) */
    int strip_accents;          /* -1: follow do_lower_case (HF's null), 0: keep, 1: strip */
    int tokenize_chinese_chars; /* default 1 */
    int max_seq_length;         /* ids per text including [CLS] and [SEP] */
};

/*
 * Loads dir/vocab.txt and reads the special tokens named in dir/special_tokens_map.json (defaults
 * when the file is absent): [CLS], [SEP], [UNK] are required; [PAD] and [MASK] are optional. Any
 * of them occurring verbatim in a text becomes its id, as in HF's added-token split. cfg is
 * copied.
 * On success *out owns the tokenizer (sbert_tokenizer_free). On failure *out is NULL and errbuf
 * names the file and reason.
 */
int sbert_tokenizer_load(const char *dir, const struct sbert_tokenizer_config *cfg,
                         sbert_tokenizer **out, char *errbuf, size_t errlen);
void sbert_tokenizer_free(sbert_tokenizer *t);

/* Same contract as sbert_tokenize() in sbert.h. Thread-safe on a shared tokenizer. */
int sbert_tokenizer_encode(const sbert_tokenizer *t, const char *text, size_t len, int32_t *ids,
                           size_t cap, size_t *n_ids, int *truncated);

/* Number of entries in the vocabulary (for checking against config.json's vocab_size). */
size_t sbert_tokenizer_vocab_size(const sbert_tokenizer *t);

#endif
