/*
 * queue.h — the two hand-over queues of sbertd's threads.
 *
 * struct queue: requests in arrival order (the workers', the writer's and the committer's
 * input). A request belongs to whoever holds it: queue_push() hands it to the queue, queue_pop()
 * to the thread that took it.
 *
 * struct batch_queue: jobs waiting for a thread that serves them in shared batches (the encoder,
 * the searcher). A waiter queues its job and sleeps until the batch thread has served the batch
 * that holds it; the job (on the waiter's stack) belongs to the batch thread from batch_wait()
 * until batch_done() sets its done flag.
 *
 * Thread safety: every function may be called from any thread; each queue has its own mutex.
 * init/destroy are the owner's, before and after every other call.
 */
#ifndef SBERTD_QUEUE_H
#define SBERTD_QUEUE_H

#include <pthread.h>
#include <stddef.h>

struct request;
struct op;

struct queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct request *head, *tail;
    size_t n;
    int closed;
};

void queue_init(struct queue *q);
void queue_destroy(struct queue *q);

/* Appends r (whose next link the queue owns from here on). */
void queue_push(struct queue *q, struct request *r);

/* Takes the first request, waiting for one; NULL once the queue is closed and empty. */
struct request *queue_pop(struct queue *q);

/* Takes the first request only if its op is op (without waiting); else NULL. */
struct request *queue_pop_if(struct queue *q, const struct op *op);

/* Wakes every waiter; queue_pop() returns NULL once the queue is empty. */
void queue_close(struct queue *q);

/* A job type embeds struct batch_job as its first member. */
struct batch_job {
    struct batch_job *next;
    size_t weight; /* what counts against a batch's limit (texts, queries) */
    int done;      /* set by the batch thread; the job is its waiter's again */
};

struct batch_queue {
    pthread_mutex_t mu;
    pthread_cond_t cv, done_cv;
    struct batch_job *head, *tail;
    int stop;
};

void batch_queue_init(struct batch_queue *q);

/* Queues j and waits until the batch thread has served it. */
void batch_wait(struct batch_queue *q, struct batch_job *j);

/* The batch thread's next batch: every waiting job, in order, whose weights fit in max_weight
 * (at least one job). Blocks while none waits; NULL once the queue is stopped and empty. */
struct batch_job *batch_take(struct batch_queue *q, size_t max_weight);

/* Hands every job of batch back to its waiter. */
void batch_done(struct batch_queue *q, struct batch_job *batch);

/* Makes batch_take() return NULL once the queue is empty. */
void batch_queue_stop(struct batch_queue *q);

#endif
