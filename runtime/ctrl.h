/* ctrl.h: the frames of the control connections between ranks (layout and meaning in
 * runtime/progress.c), and their parser, which the fuzz harness drives too. */
#ifndef LOOM_CTRL_H
#define LOOM_CTRL_H

#include <stddef.h>
#include <stdint.h>

enum { CTRL_HEARTBEAT = 1, CTRL_BYE = 2, CTRL_ABORT = 3, CTRL_SHM_REQ = 4, CTRL_SHM_FD = 5 };
#define CTRL_TEXT_MAX 640

struct ctrl_frame {
    uint32_t magic, type;
    int32_t code;
    uint32_t len;
};

/* The frame at the start of rx[0..len) from a peer of a comm of nranks: 0 whole (its
   header in *f, its size with the text in *need), 1 more bytes needed, -1 not a frame
   a peer may send (*why says what was wrong: the connection is then given up). */
int ctrl_parse(const char *rx, size_t len, int nranks, struct ctrl_frame *f, size_t *need, const char **why);

#endif
