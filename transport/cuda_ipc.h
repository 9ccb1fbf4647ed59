/* cuda_ipc.h: device FIFOs between ranks on one host (transport/cuda_ipc.c).
 * Not a struct loom_transport: that vtable's FIFOs are host memory driven by the host
 * executor; these are device memory read and written only by CUDA kernels
 * (algos/exec_cuda.cu), so they need nothing but opening and closing. */
#ifndef LOOM_CUDA_IPC_H
#define LOOM_CUDA_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include "loom.h"

struct loom_comm;

struct cuda_link {
    char *fifo;            /* device address of the FIFO (channel 0) in this process */
    size_t bytes;
    bool owned;            /* receiver: allocated here                              */
    bool imported;         /* sender: opened with cudaIpcOpenMemHandle              */
    char name[64];         /* the shm record that carried the handle                */
};

/* Open one direction of the link with peer: the receiver allocates `bytes` of zeroed
   device memory and publishes it; the sender waits for that (bounded by the comm's
   timeout) and maps it. The current device is the comm's. */
loom_result_t cuda_link_open(struct loom_comm *c, int peer, bool is_send, size_t bytes, void *stream,
                             struct cuda_link **out, char *err, size_t errlen);
void cuda_link_close(struct cuda_link *l);   /* NULL: nothing */

#endif
