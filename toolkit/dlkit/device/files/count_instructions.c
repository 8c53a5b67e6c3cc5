/*
 * dlkit's instruction counter: a TCG plugin for qemu user-mode (QEMU 7.2, plugin API version 1).
 *
 * Every translated block gets an inline add of its instruction count to one counter, so the counter holds the
 * guest instructions executed so far. The guest marks the span to measure with a syscall that cannot succeed,
 * lseek(-1, OFFSET, SEEK_SET) (it fails with EBADF and has no other effect): the offset given as `start` notes
 * the counter, the one given as `stop` appends the instructions since the last start to the file named by `out`,
 * one line "interval N" each, written at once so a crash later loses nothing ("unpaired N" for a stop without a
 * start). At exit "total N" (the whole process) is appended.
 *
 *     qemu-aarch64 -plugin ./count_instructions.so,out=/tmp/counts.txt,start=0x1234,stop=0x1235 \
 *         -cpu cortex-a76 ./program
 *
 * Debian ships no plugin header, so the few types and functions used are declared here, as QEMU 7.2's
 * include/qemu/qemu-plugin.h documents them. The inline add is not atomic: threads running at once may lose
 * counts, so count a single-threaded workload (onnxruntime with one intra-op and one inter-op thread).
 * Build: gcc -shared -fPIC -O2 -o count_instructions.so count_instructions.c
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

/* --- QEMU 7.2's plugin API: only what this file uses --- */
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t; /* only passed through, never read */
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };

typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_syscall_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num,
                                              uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                                              uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr,
                                              uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_syscall_cb_t cb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);

EXPORT int qemu_plugin_version = 1; /* QEMU_PLUGIN_VERSION of QEMU 7.2 */

/* --- the counter --- */
#define SYS_LSEEK_AARCH64 62 /* asm-generic/unistd.h: __NR3264_lseek */
static uint64_t executed;    /* guest instructions so far (inline adds) */
static uint64_t started;     /* `executed` at the last start marker */
static bool running;         /* between a start and a stop marker */
static uint64_t start_offset, stop_offset; /* the markers: lseek offsets no program asks for */
static char out_path[4096];

static void append(const char *kind, uint64_t count)
{
    FILE *out = fopen(out_path, "a");
    if (out == NULL) {
        qemu_plugin_outs("count_instructions: cannot open the out file\n");
        return;
    }
    fprintf(out, "%s %llu\n", kind, (unsigned long long)count);
    fclose(out);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    (void)id; (void)vcpu_index; (void)a4; (void)a5; (void)a6; (void)a7; (void)a8;
    if (num != SYS_LSEEK_AARCH64 || (int32_t)a1 != -1 || a3 != 0) {
        return;
    }
    if (a2 == start_offset) {
        started = executed;
        running = true;
    } else if (a2 == stop_offset) {
        append(running ? "interval" : "unpaired", executed - started);
        running = false;
    }
}

static void on_process_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id; (void)userdata;
    append("total", executed);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0 && strlen(argv[i] + 4) < sizeof(out_path)) {
            strcpy(out_path, argv[i] + 4);
        } else if (strncmp(argv[i], "start=", 6) == 0) {
            start_offset = strtoull(argv[i] + 6, NULL, 0);
        } else if (strncmp(argv[i], "stop=", 5) == 0) {
            stop_offset = strtoull(argv[i] + 5, NULL, 0);
        }
    }
    if (out_path[0] == '\0' || start_offset == 0 || stop_offset == 0 || start_offset == stop_offset) {
        qemu_plugin_outs("count_instructions: give out=PATH,start=OFFSET,stop=OFFSET (two offsets, not 0)\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, on_process_exit, NULL);
    return 0;
}
