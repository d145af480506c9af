/* passages.c — a document as passages that fit the model (op.h: sbertd_passages): the text
 * splitter (sbert_text.h) with the model's own tokenizer as its counter. */
#define _GNU_SOURCE
#include "server.h"

#include <stdlib.h>

#include "sbert_text.h"

/* The splitter's counter: the tokens of a piece without [CLS] and [SEP], as the encoder will see
 * them; a piece the tokenizer had to truncate counts as more than max. */
struct counter {
    const sbert_model *model;
    int32_t *ids;
    size_t cap;
};

static int count_tokens(const char *text, size_t len, size_t max, size_t *tokens, void *user)
{
    struct counter *c = user;
    size_t n = 0;
    int truncated = 0;
    int rc = sbert_tokenize(c->model, text, len, c->ids, c->cap, &n, &truncated);
    if (rc) return rc;
    *tokens = truncated ? max + 1 : (n >= 2 ? n - 2 : 0);
    return 0;
}

size_t sbertd_passage_window(const struct sbertd *d)
{
    int msl = d->info->max_seq_length;
    return msl > 3 ? (size_t)msl - 2 : 1;
}

int sbertd_passages(struct sbertd *d, const char *text, size_t len, struct sbert_passage **out,
                    size_t *n, struct sbert_proto_error *err)
{
    *out = NULL;
    *n = 0;
    size_t window = sbertd_passage_window(d);
    size_t overlap = (size_t)d->cfg.passage_overlap_tokens;
    if (overlap >= window) overlap = window / 4;
    struct counter c = {.model = d->model, .cap = window + 2};
    if (!(c.ids = malloc(c.cap * sizeof *c.ids)))
        return sbert_proto_error_set(err, SBERT_PROTO_EINTERNAL, -1, "out of memory");
    int rc = sbert_passages_split(text, len, window, overlap, count_tokens, &c, out, n);
    free(c.ids);
    if (rc == SBERT_TEXT_ENOMEM)
        return sbert_proto_error_set(err, SBERT_PROTO_EINTERNAL, -1, "out of memory");
    if (rc)
        return sbert_proto_error_set(err, SBERT_PROTO_EINTERNAL, -1,
                                     "splitting a text into passages failed (%d)", rc);
    return 0;
}
