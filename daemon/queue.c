/* queue.c — the request queue and the batch queue (queue.h). */
#include "queue.h"

#include "server.h"

#include <string.h>

/* ---- requests -------------------------------------------------------------------------------- */

void queue_init(struct queue *q)
{
    memset(q, 0, sizeof *q);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
}

void queue_destroy(struct queue *q)
{
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
}

void queue_push(struct queue *q, struct request *r)
{
    pthread_mutex_lock(&q->mu);
    r->next = NULL;
    if (q->tail)
        q->tail->next = r;
    else
        q->head = r;
    q->tail = r;
    q->n++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

struct request *queue_pop(struct queue *q)
{
    pthread_mutex_lock(&q->mu);
    while (!q->head && !q->closed)
        pthread_cond_wait(&q->cv, &q->mu);
    struct request *r = q->head;
    if (r) {
        q->head = r->next;
        if (!q->head) q->tail = NULL;
        q->n--;
    }
    pthread_mutex_unlock(&q->mu);
    return r;
}

struct request *queue_pop_if(struct queue *q, const struct op *op)
{
    pthread_mutex_lock(&q->mu);
    struct request *r = q->head;
    if (r && r->op == op) {
        q->head = r->next;
        if (!q->head) q->tail = NULL;
        q->n--;
    } else
        r = NULL;
    pthread_mutex_unlock(&q->mu);
    return r;
}

void queue_close(struct queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->closed = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

/* ---- shared batches -------------------------------------------------------------------------- */

void batch_queue_init(struct batch_queue *q)
{
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    pthread_cond_init(&q->done_cv, NULL);
}

void batch_wait(struct batch_queue *q, struct batch_job *j)
{
    pthread_mutex_lock(&q->mu);
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    pthread_cond_signal(&q->cv);
    while (!j->done)
        pthread_cond_wait(&q->done_cv, &q->mu);
    pthread_mutex_unlock(&q->mu);
}

struct batch_job *batch_take(struct batch_queue *q, size_t max_weight)
{
    pthread_mutex_lock(&q->mu);
    while (!q->head && !q->stop)
        pthread_cond_wait(&q->cv, &q->mu);
    struct batch_job *batch = q->head, *last = batch;
    if (batch) {
        size_t total = batch->weight;
        while (last->next && total + last->next->weight <= max_weight) {
            last = last->next;
            total += last->weight;
        }
        q->head = last->next;
        if (!q->head) q->tail = NULL;
        last->next = NULL;
    }
    pthread_mutex_unlock(&q->mu);
    return batch;
}

void batch_done(struct batch_queue *q, struct batch_job *batch)
{
    pthread_mutex_lock(&q->mu);
    while (batch) {
        struct batch_job *next = batch->next;
        batch->done = 1; /* the job belongs to its waiter from here on */
        batch = next;
    }
    pthread_cond_broadcast(&q->done_cv);
    pthread_mutex_unlock(&q->mu);
}

void batch_queue_stop(struct batch_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}
