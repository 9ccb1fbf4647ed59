/* fuzz_ctrl: the control-connection stream between ranks (ctrl_parse, runtime/ctrl.h),
 * fed in pieces as recv would (the first byte sets the piece size). Every frame taken
 * must lie within what was received, and a stream is taken apart the same way whatever
 * the pieces. */
#include <stdlib.h>
#include <string.h>

#include "ctrl.h"

/* Frames in data[0..size) read in pieces of step bytes: how many were whole before the
   first bad one or the end, and how far they reached. */
static size_t walk(const unsigned char *data, size_t size, size_t step, int *frames)
{
    char rx[sizeof(struct ctrl_frame) + CTRL_TEXT_MAX];
    size_t have = 0, fed = 0, taken = 0;
    *frames = 0;
    for (;;) {
        size_t n = size - fed < step ? size - fed : step;
        if (n > sizeof rx - have) n = sizeof rx - have;
        memcpy(rx + have, data + fed, n);
        have += n;
        fed += n;
        for (;;) {
            struct ctrl_frame f;
            size_t need = 0;
            const char *why = NULL;
            int st = ctrl_parse(rx, have, 4, &f, &need, &why);
            if (st < 0) {
                if (why == NULL) abort();
                return taken;
            }
            if (st > 0) break;
            if (need < sizeof f || need > have || need != sizeof f + f.len) abort();
            memmove(rx, rx + need, have - need);
            have -= need;
            taken += need;
            (*frames)++;
        }
        if (fed == size) return taken;
        if (n == 0) abort();   /* a partial frame bigger than the buffer: impossible */
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size == 0) return 0;
    size_t step = (size_t)data[0] % 64 + 1;
    int a, b;
    size_t ta = walk(data + 1, size - 1, step, &a), tb = walk(data + 1, size - 1, size, &b);
    if (ta != tb || a != b) abort();
    return 0;
}
