/* stopwords.c — the English stop list: NLTK's 179 English stop words, the list bm25s applies
 * with stopwords="en" (kept sorted for bsearch; stored folded, apostrophes as in the source). */
#include "sbert_text.h"

#include <stdlib.h>
#include <string.h>

static const char *const STOP_EN[] = {
    "a",          "about",    "above",     "after",      "again",   "against", "ain",
    "all",        "am",       "an",        "and",        "any",     "are",     "aren",
    "aren't",     "as",       "at",        "be",         "because", "been",    "before",
    "being",      "below",    "between",   "both",       "but",     "by",      "can",
    "couldn",     "couldn't", "d",         "did",        "didn",    "didn't",  "do",
    "does",       "doesn",    "doesn't",   "doing",      "don",     "don't",   "down",
    "during",     "each",     "few",       "for",        "from",    "further", "had",
    "hadn",       "hadn't",   "has",       "hasn",       "hasn't",  "have",    "haven",
    "haven't",    "having",   "he",        "her",        "here",    "hers",    "herself",
    "him",        "himself",  "his",       "how",        "i",       "if",      "in",
    "into",       "is",       "isn",       "isn't",      "it",      "it's",    "its",
    "itself",     "just",     "ll",        "m",          "ma",      "me",      "mightn",
    "mightn't",   "more",     "most",      "mustn",      "mustn't", "my",      "myself",
    "needn",      "needn't",  "no",        "nor",        "not",     "now",     "o",
    "of",         "off",      "on",        "once",       "only",    "or",      "other",
    "our",        "ours",     "ourselves", "out",        "over",    "own",     "re",
    "s",          "same",     "shan",      "shan't",     "she",     "she's",   "should",
    "should've",  "shouldn",  "shouldn't", "so",         "some",    "such",    "t",
    "than",       "that",     "that'll",   "the",        "their",   "theirs",  "them",
    "themselves", "then",     "there",     "these",      "they",    "this",    "those",
    "through",    "to",       "too",       "under",      "until",   "up",      "ve",
    "very",       "was",      "wasn",      "wasn't",     "we",      "were",    "weren",
    "weren't",    "what",     "when",      "where",      "which",   "while",   "who",
    "whom",       "why",      "will",      "with",       "won",     "won't",   "wouldn",
    "wouldn't",   "y",        "you",       "you'd",      "you'll",  "you're",  "you've",
    "your",       "yours",    "yourself",  "yourselves",
};

struct key {
    const char *s;
    size_t n;
};

static int cmp(const void *k, const void *e)
{
    const struct key *key = k;
    const char *w = *(const char *const *)e;
    size_t wn = strlen(w);
    int c = memcmp(key->s, w, key->n < wn ? key->n : wn);
    if (c) return c;
    return key->n < wn ? -1 : (key->n > wn ? 1 : 0);
}

int sbert_text_is_stopword_en(const char *word, size_t len)
{
    struct key k = {word, len};
    return bsearch(&k, STOP_EN, sizeof STOP_EN / sizeof STOP_EN[0], sizeof STOP_EN[0], cmp) != NULL;
}
