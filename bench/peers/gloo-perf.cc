// gloo-perf: the Gloo side of loom's peer comparison (issue 3). C++ only because
// Gloo's API is C++.
//
//   loomrun -n 4 gloo-perf -o allreduce -b 8 -e 256M -f 2 -d float32
//
// -o allreduce (Gloo's default gloo::allreduce), allreduce_ring_chunked
// (gloo::AllreduceRingChunked), allgather, reducescatter
// (gloo::ReduceScatterHalvingDoubling), broadcast; Gloo's tcp transport; rendezvous
// through a FileStore in /dev/shm named after the job (LOOM_COMM_ID from loomrun, or
// GLOO_PERF_STORE). Rank and size from LOOM_RANK/LOOM_WORLD_SIZE or Open MPI's
// variables; the interface from GLOO_PERF_IFACE (default: loopback).
// Same method and columns as loom-perf: -w warm-up calls, a barrier, -n calls timed
// together, mean per call, max over ranks, then one exact check on fresh inputs.
// Gloo's algorithms are in-place: the in-place columns repeat the measurement.
// Sum only; dtypes float32, float64, int32, int64.
#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/allreduce_ring_chunked.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/reduce_scatter.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/transport/tcp/device.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../cli.h"    // relative: this target has no -Ibench (see meson.build)
#include "../size.h"

namespace {

enum Coll { ALLREDUCE, ALLREDUCE_RING_CHUNKED, ALLGATHER, REDUCESCATTER, BROADCAST, NCOLL };
const char *kColls[] = { "allreduce", "allreduce_ring_chunked", "allgather", "reducescatter", "broadcast" };

struct Opts {
    Coll coll = ALLREDUCE;
    size_t min_bytes = 32 << 20, max_bytes = 32 << 20;
    double factor = 2;
    std::string dtype = "float32";
    int iters = 20, warmup = 5, check = 1;
} opt;

int rank_, nranks;
std::shared_ptr<gloo::Context> ctx;

void help(FILE *f)
{
    std::fprintf(f, "usage: gloo-perf [-o allreduce|allreduce_ring_chunked|allgather|reducescatter|broadcast]\n"
                    "                 [-b MIN] [-e MAX] [-f FACTOR] [-d float32|float64|int32|int64]\n"
                    "                 [-n ITERS] [-w WARMUP] [-c 0|1]\n");
}

[[noreturn]] void usage(const char *why)
{
    std::fprintf(stderr, "gloo-perf: %s\n", why);
    help(stderr);
    std::exit(2);
}

size_t parse_size(const char *s)
{
    size_t v;
    if (!bench_size(s, &v)) usage("bad size (digits, then an optional K, M or G)");
    return v;
}

void parse(int argc, char **argv)
{
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : nullptr;
        char why[96];
        std::snprintf(why, sizeof why, v ? "unknown option '%.60s'" : "'%.60s' needs a value", a);
        if (a[0] != '-' || a[1] == '\0' || a[2] != '\0' || v == nullptr) usage(why);
        switch (a[1]) {
        case 'o': {
            int c = 0;
            while (c < NCOLL && std::strcmp(v, kColls[c])) c++;
            if (c == NCOLL) usage("unknown collective");
            opt.coll = static_cast<Coll>(c);
            break;
        }
        case 'b': opt.min_bytes = parse_size(v); break;
        case 'e': opt.max_bytes = parse_size(v); break;
        case 'f': opt.factor = std::atof(v); break;
        case 'd': opt.dtype = v; break;
        case 'n': opt.iters = std::atoi(v); break;
        case 'w': opt.warmup = std::atoi(v); break;
        case 'c': opt.check = std::atoi(v); break;
        default: usage(why);
        }
    }
    if (opt.factor <= 1 || opt.iters < 1 || opt.warmup < 0 || opt.max_bytes < opt.min_bytes) usage("bad numbers");
}

int env_int(const char *a, const char *b)
{
    const char *v = std::getenv(a);
    if (!v || !*v) v = std::getenv(b);
    return v && *v ? std::atoi(v) : -1;
}

// ---- values: as loom-perf's sum: small integers, exact in every dtype ----

long long input(int r, size_t i) { return static_cast<long long>((i * 3 + static_cast<size_t>(r) * 7) % 13 + 1); }

long long summed(size_t i)
{
    long long s = 0;
    for (int q = 0; q < nranks; q++) s += input(q, i);
    return s;
}

double max_over_ranks(double v)
{
    gloo::AllreduceOptions o(ctx);
    o.setOutput(&v, 1);
    o.setReduceFunction(static_cast<void (*)(void *, const void *, const void *, size_t)>(&gloo::max<double>));
    gloo::allreduce(o);
    return v;
}

template <typename T> struct Run {
    std::vector<T> in, out;     // in: this rank's data (and Gloo's in-place buffer)
    size_t count = 0;           // the call's count (per rank for allgather/reducescatter)

    void call()
    {
        // a call that moves nothing (8 bytes gathered from 4 ranks: 0 floats each) is a
        // no-op, as in loom and MPI; Gloo's allgather divides by zero on it
        if (count == 0) return;
        switch (opt.coll) {
        case ALLREDUCE: {
            gloo::AllreduceOptions o(ctx);
            o.setOutput(in.data(), count);
            o.setReduceFunction(static_cast<void (*)(void *, const void *, const void *, size_t)>(&gloo::sum<T>));
            gloo::allreduce(o);
            break;
        }
        case ALLREDUCE_RING_CHUNKED: {
            gloo::AllreduceRingChunked<T> a(ctx, std::vector<T *>{ in.data() }, static_cast<int>(count));
            a.run();
            break;
        }
        case ALLGATHER: {
            gloo::AllgatherOptions o(ctx);
            o.setInput(in.data(), count);
            o.setOutput(out.data(), count * static_cast<size_t>(nranks));
            gloo::allgather(o);
            break;
        }
        case REDUCESCATTER: {
            std::vector<int> recv(static_cast<size_t>(nranks), static_cast<int>(count));
            gloo::ReduceScatterHalvingDoubling<T> a(ctx, std::vector<T *>{ in.data() },
                                                    static_cast<int>(count) * nranks, recv);
            a.run();
            break;
        }
        case BROADCAST: {
            gloo::BroadcastOptions o(ctx);
            o.setOutput(in.data(), count);
            o.setRoot(0);
            gloo::broadcast(o);
            break;
        }
        default: break;
        }
    }

    size_t total() const { return opt.coll == ALLGATHER || opt.coll == REDUCESCATTER ? count * nranks : count; }

    void fill()
    {
        size_t n = opt.coll == REDUCESCATTER ? count * nranks : count;
        for (size_t i = 0; i < n; i++) in[i] = static_cast<T>(input(opt.coll == BROADCAST ? 0 : rank_, i));
    }

    long long check()
    {
        fill();
        std::memset(out.data(), 0xa5, out.size() * sizeof(T));
        call();
        long long wrong = 0;
        switch (opt.coll) {
        case ALLREDUCE: case ALLREDUCE_RING_CHUNKED:
            for (size_t i = 0; i < count; i++) wrong += in[i] != static_cast<T>(summed(i));
            break;
        case REDUCESCATTER:   // rank r's block of the reduction, at the start of the buffer
            for (size_t i = 0; i < count; i++)
                wrong += in[i] != static_cast<T>(summed(rank_ * count + i));
            break;
        case ALLGATHER:
            for (int q = 0; q < nranks; q++)
                for (size_t i = 0; i < count; i++) wrong += out[q * count + i] != static_cast<T>(input(q, i));
            break;
        case BROADCAST:
            for (size_t i = 0; i < count; i++) wrong += in[i] != static_cast<T>(input(0, i));
            break;
        default: break;
        }
        double w = static_cast<double>(wrong), total = w;
        gloo::AllreduceOptions o(ctx);
        o.setOutput(&total, 1);
        o.setReduceFunction(static_cast<void (*)(void *, const void *, const void *, size_t)>(&gloo::sum<double>));
        gloo::allreduce(o);
        return static_cast<long long>(total);
    }

    int sweep()
    {
        bool per = opt.coll == ALLGATHER || opt.coll == REDUCESCATTER;
        double bus = opt.coll == BROADCAST ? 1.0
                   : (opt.coll == ALLREDUCE || opt.coll == ALLREDUCE_RING_CHUNKED) ? 2.0 * (nranks - 1) / nranks
                   : static_cast<double>(nranks - 1) / nranks;
        size_t maxc = opt.max_bytes / sizeof(T) + 1;
        in.assign(maxc, T());
        out.assign(maxc, T());
        long long bad = 0;
        double sum_bw = 0;
        int rows = 0;
        for (size_t bytes = opt.min_bytes; bytes <= opt.max_bytes;) {
            count = bytes / sizeof(T) / (per ? static_cast<size_t>(nranks) : 1);
            fill();
            for (int i = 0; i < opt.warmup; i++) call();
            gloo::BarrierOptions b(ctx);
            gloo::barrier(b);
            auto t0 = std::chrono::steady_clock::now();
            for (int i = 0; i < opt.iters; i++) call();
            double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / opt.iters;
            t = max_over_ranks(t);
            long long wrong = opt.check ? check() : 0;
            bad += wrong;
            if (rank_ == 0) {
                double algbw = static_cast<double>(total() * sizeof(T)) / t / 1e9;
                const char *redop = opt.coll == ALLGATHER || opt.coll == BROADCAST ? "none" : "sum";
                // in-place columns: Gloo works in place, so the same measurement again
                std::printf("%12zu  %12zu  %8s  %6s  %6d  %8.2f  %6.2f  %6.2f  %5lld  %8.2f  %6.2f  %6.2f  %5lld\n",
                            total() * sizeof(T), count, opt.dtype.c_str(), redop, opt.coll == BROADCAST ? 0 : -1,
                            t * 1e6, algbw, algbw * bus, wrong, t * 1e6, algbw, algbw * bus, wrong);
                std::fflush(stdout);
                sum_bw += 2 * algbw * bus;
                rows += 2;
            }
            size_t next = static_cast<size_t>(static_cast<double>(bytes ? bytes : sizeof(T)) * opt.factor);
            if (next <= bytes) break;
            bytes = next;
        }
        if (rank_ == 0) {
            std::printf("# Out of bounds values : %lld %s\n", bad, bad ? "FAILED" : "OK");
            std::printf("# Avg bus bandwidth    : %g \n#\n", rows ? sum_bw / rows : 0.0);
        }
        return bad ? 1 : 0;
    }
};

// The FileStore leaves one file per key: remove them and the directory.
void remove_store(const std::string &dir)
{
    DIR *d = opendir(dir.c_str());
    if (d == nullptr) return;
    for (struct dirent *e; (e = readdir(d)) != nullptr;)
        if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) unlink((dir + "/" + e->d_name).c_str());
    closedir(d);
    rmdir(dir.c_str());
}

}  // namespace

int main(int argc, char **argv)
{
    cli_scan(argc, argv, "gloo-perf", help, 1);
    parse(argc, argv);
    rank_ = env_int("LOOM_RANK", "OMPI_COMM_WORLD_RANK");
    nranks = env_int("LOOM_WORLD_SIZE", "OMPI_COMM_WORLD_SIZE");
    if (rank_ < 0 || nranks < 1 || rank_ >= nranks) rank_ = 0, nranks = 1;
    // The store: a directory every rank of this job names the same way.
    std::string store = std::getenv("GLOO_PERF_STORE") ? std::getenv("GLOO_PERF_STORE") : "";
    if (store.empty()) {
        const char *id = std::getenv("LOOM_COMM_ID");
        const char *ns = std::getenv("PMIX_NAMESPACE");
        std::string key = id ? id : ns ? ns : "single";
        unsigned long long h = 1469598103934665603ull;
        for (char ch : key) h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
        store = "/dev/shm/gloo-perf-" + std::to_string(h);
    }
    mkdir(store.c_str(), 0700);   // EEXIST from the other ranks is fine
    gloo::transport::tcp::attr attr;
    const char *iface = std::getenv("GLOO_PERF_IFACE");
    attr.iface = iface ? iface : "lo";
    auto dev = gloo::transport::tcp::CreateDevice(attr);
    gloo::rendezvous::FileStore fs(store);
    auto c = std::make_shared<gloo::rendezvous::Context>(rank_, nranks);
    c->connectFullMesh(fs, dev);
    ctx = c;
    if (rank_ == 0) {
        std::printf("# gloo-perf (Gloo tcp): %s  nranks %d  dtype %s  iters %d  warmup %d\n", kColls[opt.coll], nranks,
                    opt.dtype.c_str(), opt.iters, opt.warmup);
        std::printf("#                                                              out-of-place                       in-place          \n");
        std::printf("#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong\n");
        std::printf("#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)       \n");
    }
    int rc;
    if (opt.dtype == "float32") rc = Run<float>().sweep();
    else if (opt.dtype == "float64") rc = Run<double>().sweep();
    else if (opt.dtype == "int32") rc = Run<int32_t>().sweep();
    else if (opt.dtype == "int64") rc = Run<int64_t>().sweep();
    else usage("dtype not supported by gloo-perf");
    gloo::BarrierOptions b(ctx);
    gloo::barrier(b);
    if (rank_ == 0) remove_store(store);
    return rc;
}
