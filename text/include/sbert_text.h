/* sbert_text.h — text analysis: for the keyword (BM25) side of retrieval, a text becomes the
 * sequence of terms that documents and queries are matched on; for long documents, a text becomes
 * passages that fit the model.
 *
 * The steps, in order (the same for documents and queries, so both meet on the same terms):
 *  1. Words: maximal runs of word characters — Unicode letters (L*), numbers (N*), combining marks
 *     (M*, so a letter with its accents stays one word in every script) and connector punctuation
 *     (Pc, e.g. '_'). Everything else separates words; bytes that are not valid UTF-8 do too.
 *     A word of fewer than 2 code points is dropped: the rule of scikit-learn's and bm25s's default
 *     token pattern (\w\w+), whose BM25 figures we compare with.
 *  2. Case folding and NFC composition (utf8proc: UTF8PROC_CASEFOLD | UTF8PROC_COMPOSE), so
 *     "Straße", "STRASSE" and "strasse" meet.
 *  3. A word whose folded form is longer than SBERT_TEXT_MAX_TERM bytes is cut there (on a
 *     character boundary): a 10 MB "word" costs no more than a short one, and a query holding the
 *     same word still meets it.
 *  4. Stop words (English only: the 179 words of NLTK's English list, the list bm25s uses) are
 *     dropped when the language is "english".
 *  5. Snowball stemming (libstemmer) in the analyzer's language; "none" keeps the folded word.
 * Each term carries its position: the ordinal of its word among the words kept by step 1, stop
 * words included, so positions say how far apart two terms stood.
 *
 * Passages: sbert_passages_split cuts a long document into passages that fit the model (below).
 *
 * Errors: functions that can fail return 0 or a negative SBERT_TEXT_E* code; sbert_text_strerror
 * names it. Thread safety: an analyzer holds a stemmer's state and scratch buffers, so it is used
 * by one thread at a time; make one per thread. Nothing here prints.
 */
#ifndef SBERT_TEXT_H
#define SBERT_TEXT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    SBERT_TEXT_OK = 0,
    SBERT_TEXT_ENOMEM = -1,    /* allocation failed */
    SBERT_TEXT_ELANGUAGE = -2, /* no Snowball stemmer of that name */
    SBERT_TEXT_EINVAL = -3     /* a bad argument (passage limits) */
};

#define SBERT_TEXT_MAX_TERM 128 /* bytes of a folded word before stemming; see step 3 */

const char *sbert_text_strerror(int err);

typedef struct sbert_analyzer sbert_analyzer;

/* Makes an analyzer for language: "none" (fold only) or a Snowball algorithm name or ISO 639 code
 * in lower case ("english" or "en", "german", "french", ...; sbert_text_languages lists them).
 * NULL or "" means "english". On success *out owns the analyzer (free with sbert_analyzer_free).
 * SBERT_TEXT_ELANGUAGE when libstemmer has no such algorithm. */
int sbert_analyzer_new(const char *language, sbert_analyzer **out);

void sbert_analyzer_free(sbert_analyzer *a);

/* The canonical name of the analyzer's language ("english", "none", ...): what a store records. */
const char *sbert_analyzer_language(const sbert_analyzer *a);

/* Called once per term, in text order: term[0..len) is UTF-8, not NUL-terminated, valid only
 * during the call. A non-zero return stops the analysis, and sbert_analyzer_run returns it. */
typedef int (*sbert_term_fn)(const char *term, size_t len, uint32_t position, void *user);

/* Analyses text[0..len) (any bytes; invalid UTF-8 separates words) and calls fn for each term.
 * Returns 0, SBERT_TEXT_ENOMEM, or the first non-zero value fn returned. */
int sbert_analyzer_run(sbert_analyzer *a, const char *text, size_t len, sbert_term_fn fn,
                       void *user);

/* The language names sbert_analyzer_new accepts besides "none": a NULL-terminated list owned by
 * libstemmer (static). */
const char **sbert_text_languages(void);

/* 1 when word[0..len) (already case-folded) is on the English stop list, else 0. */
int sbert_text_is_stopword_en(const char *word, size_t len);

/* ---- passages -------------------------------------------------------------------------------
 * A long document becomes passages the encoder takes whole: each at most max_tokens tokens as the
 * caller's tokenizer counts them, cut where the text itself breaks. The text is read as paragraphs
 * (separated by a blank line) of sentences (ended by . ! ? or a full stop of another script —
 * 。！？։۔।॥ — with any closing quotes or brackets, then white space; a CJK full stop needs no
 * space). Sentences are packed into a passage in order while they fit; a passage ends early at the
 * end of a paragraph once it is half full. The next passage starts with the last sentences of the
 * one before that fit in overlap_tokens (never all of them, so passages always move on). A
 * sentence longer than max_tokens is cut between words, and a word longer than that into pieces of
 * max_tokens characters. Every passage is counted again whole before it is accepted.
 * White space is BERT's (space, tab, newline, carriage return, Unicode Zs), where its pre-tokenizer
 * splits words. Offsets are bytes of the text; a passage never starts or ends with white space.
 */

/* Sets *tokens to the number of tokens text[0..len) makes (without the model's [CLS]/[SEP]), or
 * to any number above max when it makes more than max (the caller may stop counting there).
 * Returns 0, or a non-zero value that stops the split and is returned by it. */
typedef int (*sbert_count_fn)(const char *text, size_t len, size_t max, size_t *tokens, void *user);

struct sbert_passage {
    size_t start, end; /* text[start..end) */
    size_t tokens;     /* as counted for the whole passage: above max_tokens only for a piece
                          the splitter could not cut where the counter would have (the encoder
                          then truncates it) */
};

/* Splits text[0..len) (UTF-8) into passages; max_tokens >= 1, overlap_tokens < max_tokens. On
 * success *out (NULL when the text holds nothing but white space) owns *n passages in text order;
 * the caller frees it with free(). Returns 0, SBERT_TEXT_ENOMEM, SBERT_TEXT_EINVAL for bad limits,
 * or what count returned. */
int sbert_passages_split(const char *text, size_t len, size_t max_tokens, size_t overlap_tokens,
                         sbert_count_fn count, void *user, struct sbert_passage **out, size_t *n);

#ifdef __cplusplus
}
#endif

#endif
