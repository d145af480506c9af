/* html.c — the text of an HTML page through libxml2's HTML parser (sbert_extract.h). */
#include "internal.h"
#include "sbert_util.h"

#include <libxml/HTMLparser.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* libxml2 asks for xmlInitParser once before parsers run in several threads. */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static void init_libxml(void)
{
    xmlInitParser();
}

enum kind { INLINE, SKIP, LINE, BLOCK, CELL };

/* Elements by what they do to the text; anything not listed is inline. */
static enum kind kind_of(const char *name)
{
    /* <head> is walked: its <title> is the title, and the rest holds no text outside these */
    static const char *const skip[] = {"script", "style",  "noscript", "template",
                                       "svg",    "iframe", "object",   "math"};
    static const char *const line[] = {"br", "li", "tr", "dt", "dd", "option", "caption"};
    static const char *const block[] = {
        "p",       "div",     "h1",     "h2",    "h3",      "h4",         "h5",      "h6",
        "ul",      "ol",      "dl",     "table", "thead",   "tbody",      "tfoot",   "section",
        "article", "header",  "footer", "nav",   "aside",   "main",       "figure",  "figcaption",
        "form",    "address", "pre",    "hr",    "details", "blockquote", "summary", "body"};
    for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++)
        if (strcmp(name, skip[i]) == 0) return SKIP;
    for (size_t i = 0; i < sizeof line / sizeof line[0]; i++)
        if (strcmp(name, line[i]) == 0) return LINE;
    for (size_t i = 0; i < sizeof block / sizeof block[0]; i++)
        if (strcmp(name, block[i]) == 0) return BLOCK;
    if (strcmp(name, "td") == 0 || strcmp(name, "th") == 0) return CELL;
    return INLINE;
}

struct walk {
    struct xbuf b;
    int space;    /* a space is owed before the next visible character */
    int newlines; /* newlines at the end of b (0..2) */
    int pre;      /* depth of <pre> elements around the current node */
    char *title, *h1;
};

static int put(struct walk *w, const char *s, size_t n)
{
    if (w->b.over) return 0; /* extract_finish reports the size */
    return xbuf_put(&w->b, s, n);
}

/* Ends the current line (want 1) or paragraph (want 2); nothing at the start of the text. */
static int newline(struct walk *w, int want)
{
    w->space = 0;
    if (w->b.n == 0) return 0;
    while (w->newlines < want) {
        if (put(w, "\n", 1)) return SBERT_EXTRACT_ENOMEM;
        w->newlines++;
    }
    return 0;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int text(struct walk *w, const char *s)
{
    if (w->pre) {
        size_t n = strlen(s);
        if (n && w->space && put(w, " ", 1)) return SBERT_EXTRACT_ENOMEM;
        w->space = 0;
        if (n) w->newlines = s[n - 1] == '\n' ? 1 : 0;
        return n ? put(w, s, n) : 0;
    }
    while (*s) {
        if (is_space(*s)) {
            if (w->b.n && !w->newlines) w->space = 1;
            s++;
            continue;
        }
        size_t n = 0;
        while (s[n] && !is_space(s[n]))
            n++;
        if (w->space && put(w, " ", 1)) return SBERT_EXTRACT_ENOMEM;
        if (put(w, s, n)) return SBERT_EXTRACT_ENOMEM;
        w->space = 0;
        w->newlines = 0;
        s += n;
    }
    return 0;
}

/* A node's text with whitespace collapsed, as a title: a malloc'd string, or NULL. */
static char *collapsed_content(xmlNodePtr node)
{
    xmlChar *c = xmlNodeGetContent(node);
    if (!c) return NULL;
    char *out = malloc(strlen((const char *)c) + 1), *o = out;
    if (out) {
        int space = 0;
        for (const char *s = (const char *)c; *s; s++) {
            if (is_space(*s)) {
                space = o > out;
                continue;
            }
            if (space) *o++ = ' ';
            space = 0;
            *o++ = *s;
        }
        *o = '\0';
        if (o == out) {
            free(out);
            out = NULL;
        }
    }
    xmlFree(c);
    return out;
}

/* Visits node on the way down; returns 1 when its children are to be visited, 0 when not, or an
 * error code. */
static int enter(struct walk *w, xmlNodePtr node)
{
    if (node->type == XML_TEXT_NODE || node->type == XML_CDATA_SECTION_NODE)
        return node->content ? text(w, (const char *)node->content) : 0;
    if (node->type != XML_ELEMENT_NODE || !node->name) return 0;
    const char *name = (const char *)node->name;
    if (strcmp(name, "title") == 0) {
        if (!w->title) w->title = collapsed_content(node);
        return 0;
    }
    if (strcmp(name, "h1") == 0 && !w->h1) w->h1 = collapsed_content(node);
    switch (kind_of(name)) {
    case SKIP:
        return 0;
    case LINE:
        if (newline(w, 1)) return SBERT_EXTRACT_ENOMEM;
        break;
    case BLOCK:
        if (newline(w, 2)) return SBERT_EXTRACT_ENOMEM;
        break;
    case CELL:
        if (w->b.n && !w->newlines) w->space = 1;
        break;
    case INLINE:
        break;
    }
    if (strcmp(name, "pre") == 0) w->pre++;
    return 1;
}

/* Visits an element entered with enter() == 1 on the way up. */
static int leave(struct walk *w, xmlNodePtr node)
{
    if (node->type != XML_ELEMENT_NODE || !node->name) return 0;
    const char *name = (const char *)node->name;
    if (strcmp(name, "pre") == 0 && w->pre) w->pre--;
    enum kind k = kind_of(name);
    return k == BLOCK ? newline(w, 2) : k == LINE ? newline(w, 1) : 0;
}

/* Depth-first over the tree without recursion: a page nested 100,000 elements deep costs no
 * stack. */
static int walk_tree(struct walk *w, xmlNodePtr root)
{
    xmlNodePtr n = root;
    while (n) {
        int r = enter(w, n);
        if (r < 0) return r;
        if (r == 1 && n->children) {
            n = n->children;
            continue;
        }
        for (;;) {
            if (r == 1 && leave(w, n)) return SBERT_EXTRACT_ENOMEM;
            r = 1; /* every ancestor was entered with its children */
            if (n == root) return 0;
            if (n->next) {
                n = n->next;
                break;
            }
            n = n->parent;
        }
    }
    return 0;
}

int extract_html(const char *data, size_t len, const struct sbert_extract_params *p,
                 struct sbert_extract_doc *out, char *errbuf, size_t errlen)
{
    if (len > INT_MAX)
        return sbert_util_errf(errbuf, errlen, SBERT_EXTRACT_ETOOBIG,
                               "html: %zu bytes is more than the HTML parser takes", len);
    pthread_once(&init_once, init_libxml);
    /* RECOVER: pages in the wild are malformed; NONET: never fetch a DTD or entity. */
    int opts = HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING | HTML_PARSE_NONET;
    htmlDocPtr doc = htmlReadMemory(data, (int)len, NULL, NULL, opts);
    if (!doc)
        return sbert_util_errf(errbuf, errlen, SBERT_EXTRACT_EPARSE,
                               "html: libxml2 could not parse the page");
    struct walk w = {.b = {.max = p->max_text_bytes}};
    xmlNodePtr root = xmlDocGetRootElement(doc);
    int rc = root ? walk_tree(&w, root) : 0;
    xmlFreeDoc(doc);
    while (!rc && w.b.n && w.b.p[w.b.n - 1] == '\n')
        w.b.p[--w.b.n] = '\0';
    char *title = w.title ? w.title : w.h1;
    if (title == w.title) free(w.h1);
    if (rc) {
        free(w.b.p);
        free(title);
        return rc;
    }
    return extract_finish(&w.b, title, "html", out, errbuf, errlen);
}
