/* A fake claude / codex / gemini for the benchmark: it starts in well under a millisecond, so what the
 * benchmark sees is clinvk's own cost, not the fake's.
 *
 * Which CLI it is comes from the name it is run as (hard links claude, codex, gemini). It reads the whole
 * prompt from stdin, then prints that CLI's real output format; the lines come from the captured
 * outputs in tests/fixtures/ (bench/run.py turns them into fixtures.h, the text fields replaced by
 * \001, which this program fills in).
 *
 * Knobs, read from the prompt (so one server can serve every scenario):
 *   BENCH_EVENTS=N    stream N text deltas (claude stream-json, gemini stream-json, codex messages),
 *                     each holding "T<CLOCK_MONOTONIC ns>;" taken just before it is written
 *   BENCH_GAP_US=U    sleep U microseconds between deltas
 *   BENCH_HOLD=PATH   before answering, wait until PATH exists (polled every 10 ms, at most 60 s)
 *   BENCH_SLEEP_MS=M  before answering, sleep M milliseconds
 *
 * Like the real claude it also takes the prompt as the argument after -p (then stdin is not read) and
 * answers --version: the servers compared in bench/peers.py call it that way.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fixtures.h"

#define PROMPT_MAX (1 << 20)
#define HOLD_MAX_NS (60LL * 1000000000LL)

static char prompt[PROMPT_MAX + 1];
static char out[1 << 16];

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_us(long long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void write_all(const char *data, size_t size) {
    while (size > 0) {
        ssize_t n = write(1, data, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            _exit(1);
        }
        data += n;
        size -= (size_t)n;
    }
}

/* Write a template with every \001 replaced by text, in one write() (one line = one event). */
static void emit(const char *template, const char *text) {
    size_t n = 0, len = strlen(text);
    for (const char *p = template; *p && n + len < sizeof out; p++) {
        if (*p == '\001') {
            memcpy(out + n, text, len);
            n += len;
        } else {
            out[n++] = *p;
        }
    }
    write_all(out, n);
}

static long knob(const char *name, long fallback) {
    const char *at = strstr(prompt, name);
    if (!at || at[strlen(name)] != '=') return fallback;
    return strtol(at + strlen(name) + 1, NULL, 10);
}

static int hold_path(char *path, size_t size) {
    const char *at = strstr(prompt, "BENCH_HOLD=");
    if (!at) return 0;
    at += strlen("BENCH_HOLD=");
    size_t n = 0;
    while (at[n] && at[n] != ' ' && at[n] != '\n' && at[n] != '"' && n + 1 < size) n++;
    memcpy(path, at, n);
    path[n] = 0;
    return n > 0;
}

/* The prompt given as claude's positional argument right after -p / --print, or NULL. */
static const char *prompt_arg(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i++)
        if ((strcmp(argv[i], "-p") == 0 || strcmp(argv[i], "--print") == 0) && argv[i + 1][0] != '-')
            return argv[i + 1];
    return NULL;
}

static int has_flag(int argc, char **argv, const char *flag) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], flag) == 0) return 1;
    return 0;
}

static int has_arg(int argc, char **argv, const char *flag, const char *value) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], flag) == 0 && strcmp(argv[i + 1], value) == 0) return 1;
    return 0;
}

int main(int argc, char **argv) {
    const char *name = strrchr(argv[0], '/');
    name = name ? name + 1 : argv[0];

    if (strcmp(name, "claude") == 0 && has_flag(argc, argv, "--version")) {
        static const char version[] = "2.1.330 (Claude Code)\n";
        write_all(version, sizeof version - 1);
        return 0;
    }

    size_t got = 0;
    const char *given = strcmp(name, "claude") == 0 ? prompt_arg(argc, argv) : NULL;
    if (given) {
        got = strnlen(given, PROMPT_MAX);
        memcpy(prompt, given, got);
    }
    while (!given) {
        char sink[65536];
        char *into = got < PROMPT_MAX ? prompt + got : sink;
        size_t room = got < PROMPT_MAX ? PROMPT_MAX - got : sizeof sink;
        ssize_t n = read(0, into, room);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (into == prompt + got) got += (size_t)n;
    }
    prompt[got] = 0;
    if (got == 0) {
        static const char msg[] = "Error: Input must be provided either through stdin or as a prompt argument\n";
        if (write(2, msg, sizeof msg - 1) < 0) return 1;
        return 1;
    }

    const char *head, *delta, *tail;
    if (strcmp(name, "claude") == 0) {
        int stream = has_arg(argc, argv, "--output-format", "stream-json");
        head = stream ? CLAUDE_STREAM_HEAD : "";
        delta = stream ? CLAUDE_STREAM_DELTA : NULL;
        tail = stream ? CLAUDE_STREAM_TAIL : CLAUDE_JSON;
    } else if (strcmp(name, "codex") == 0) {
        head = CODEX_HEAD;
        delta = CODEX_DELTA;
        tail = CODEX_TAIL;
    } else if (strcmp(name, "gemini") == 0) {
        int stream = has_arg(argc, argv, "-o", "stream-json");
        head = stream ? GEMINI_STREAM_HEAD : "";
        delta = stream ? GEMINI_STREAM_DELTA : NULL;
        tail = stream ? GEMINI_STREAM_TAIL : GEMINI_JSON;
    } else {
        fprintf(stderr, "fakecli: run me as claude, codex or gemini, not %s\n", name);
        return 2;
    }

    char path[4096];
    if (hold_path(path, sizeof path)) {
        long long until = now_ns() + HOLD_MAX_NS;
        while (access(path, F_OK) != 0 && now_ns() < until) sleep_us(10000);
    }
    long sleep_ms = knob("BENCH_SLEEP_MS", 0);
    if (sleep_ms > 0) sleep_us(sleep_ms * 1000LL);

    const char *reply = "Hello from stub";
    long events = knob("BENCH_EVENTS", -1);
    long gap_us = knob("BENCH_GAP_US", 0);
    emit(head, reply);
    if (delta && events < 0) {
        emit(delta, reply);
    } else if (delta) {
        char stamp[64];
        for (long i = 0; i < events; i++) {
            if (i > 0 && gap_us > 0) sleep_us(gap_us);
            snprintf(stamp, sizeof stamp, "T%lld;", now_ns());
            emit(delta, stamp);
        }
        reply = "streamed";
    }
    emit(tail, reply);
    return 0;
}
