/* cuda_ipc.h: device FIFOs between ranks on one host (transport/cuda_ipc.c).
 * Not a struct loom_transport: that vtable's FIFOs are host memory driven by the host
 * executor; these are read and written only by CUDA kernels (algos/exec_cuda.cu), so
 * they need nothing but opening and closing. A staged link (another host) wraps the
 * tcp transport's FIFO, which the progress thread drives. */
#ifndef LOOM_CUDA_IPC_H
#define LOOM_CUDA_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include "loom.h"

struct loom_comm;

struct ipc_record;

struct cuda_link {
    char *fifo;            /* device address of the FIFO (channel 0) in this process */
    size_t bytes;
    bool owned;            /* receiver: device memory allocated here                */
    bool imported;         /* sender: opened with cudaIpcOpenMemHandle              */
    bool pending;          /* receiver: published, the sender has not answered yet  */
    struct ipc_record *rec;    /* receiver: the record, mapped while pending        */
    char *host;            /* FIFO in host memory: this process's mapping, or NULL  */
    struct loom_conn *conn;    /* staged over tcp: the comm's device link (host is
                                  its FIFO, freed with the comm, not here)          */
    size_t host_bytes;
    bool registered;       /* host is registered with CUDA                          */
    bool host_made;        /* sender: created the host FIFO's name                  */
    char name[64];         /* the shm record that carries the handle                */
    char hname[64];        /* the host FIFO's shm name                              */
};

/* Open one direction of the link with peer. The receiver allocates `bytes` of zeroed
   device memory, publishes it and returns at once (pending); the sender waits for
   that (bounded by the comm's timeout), decides where the FIFO lives (the receiver's
   GPU memory, or pinned host memory where its GPU cannot reach that) and answers.
   The current device is the comm's. */
loom_result_t cuda_link_open(struct loom_comm *c, int peer, bool is_send, size_t bytes, void *stream,
                             struct cuda_link **out, char *err, size_t errlen);
/* Does the link with peer go through tcp staging (another host, or LOOM_TRANSPORT=tcp)? */
bool cuda_link_staged(const struct loom_comm *c, int peer);
/* Receiver: wait for the sender's answer (bounded) and settle fifo. Nothing to do
   when not pending. */
loom_result_t cuda_link_finish(struct loom_comm *c, struct cuda_link *l, char *err, size_t errlen);
void cuda_link_close(struct cuda_link *l);   /* NULL: nothing */

#endif
