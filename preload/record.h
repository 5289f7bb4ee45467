/* record.h — the one place that defines what asyncshim records.
 *
 * Shared by preload/ (which writes fixed-size records into per-thread
 * buffers), collector/ (which drains them into the msgpack trace) and tools/
 * (which read the trace).  The on-disk encoding of each record kind is
 * described field by field in docs/trace-format.md.
 */
#ifndef ASYNCSHIM_RECORD_H
#define ASYNCSHIM_RECORD_H

#include <stdint.h>

#define AS_TRACE_FORMAT 1

/* Kinds of in-memory records (struct as_record.kind). */
enum as_kind {
	AS_REC_NONE = 0,
	AS_REC_ITER,   /* one loop iteration: ts = wait returned, dur = until next wait */
	AS_REC_BLOCK,  /* a blocking call on a loop thread: ts = call start, dur */
	/* tasks and slow loop callbacks: field use in preload/task.h */
	AS_REC_TASK_NEW,   /* a task was created */
	AS_REC_TASK_RUN,   /* a task ran from ts for dur, then suspended or finished */
	AS_REC_TASK_END,   /* a task completed, was cancelled or failed */
	AS_REC_CALLBACK,   /* a loop callback ran >= block_ms */
	/* stacks and stalls (preload/stack.c): a BLOCK or SAMPLE record with
	 * stack = k > 0 is followed by k FRAMES records that hold its call
	 * stack, aux code addresses in all, innermost first */
	AS_REC_SAMPLE,     /* a stall sample: ts = taken, dur = its iteration's start,
			    * fd = ns the handler took */
	AS_REC_FRAMES,     /* call = 1..3 code addresses in ts, dur, aux:stack (hi:lo) */
	/* spans and requests (preload/span.h has the field use), runtime
	 * control and flight mode (preload/ctl.c) */
	AS_REC_SPAN_BEGIN, /* a span or request begins; TEXT records with its name follow */
	AS_REC_SPAN_END,   /* it ends */
	AS_REC_SPAN_META,  /* a key=value on a span; TEXT records follow */
	AS_REC_SPAN_CUMUL, /* a cumulative span's aggregate; SPAN_MINMAX then TEXT follow */
	AS_REC_SPAN_MINMAX,
	AS_REC_SPAN_AT,    /* the span and request a following BLOCK or SAMPLE was made in */
	AS_REC_TEXT,       /* call = 1..24 bytes of text in ts, dur, stack, aux */
};

/* Interposed calls, in the order of as_call_names[]. */
enum as_call {
	AS_CALL_NONE = 0,
	/* the loop's own wait */
	AS_CALL_EPOLL_WAIT, AS_CALL_EPOLL_PWAIT, AS_CALL_EPOLL_PWAIT2,
	AS_CALL_POLL, AS_CALL_PPOLL, AS_CALL_SELECT, AS_CALL_PSELECT,
	/* sleep family */
	AS_CALL_SLEEP, AS_CALL_USLEEP, AS_CALL_NANOSLEEP, AS_CALL_CLOCK_NANOSLEEP,
	/* fd I/O */
	AS_CALL_READ, AS_CALL_WRITE, AS_CALL_PREAD, AS_CALL_PWRITE,
	AS_CALL_READV, AS_CALL_WRITEV,
	/* sockets */
	AS_CALL_RECV, AS_CALL_RECVFROM, AS_CALL_RECVMSG,
	AS_CALL_SEND, AS_CALL_SENDTO, AS_CALL_SENDMSG,
	AS_CALL_CONNECT, AS_CALL_ACCEPT, AS_CALL_ACCEPT4,
	/* files */
	AS_CALL_OPEN, AS_CALL_OPENAT, AS_CALL_FSYNC, AS_CALL_FDATASYNC,
	/* name resolution */
	AS_CALL_GETADDRINFO,
	/* a loop's wait on another epoll fd during an iteration: a nested loop
	 * (hooks/wait.c), named like the wait, written with "nested": true */
	AS_CALL_NESTED_EPOLL_WAIT, AS_CALL_NESTED_EPOLL_PWAIT, AS_CALL_NESTED_EPOLL_PWAIT2,
	/* locks and semaphores (hooks/lock.c) */
	AS_CALL_PTHREAD_MUTEX_LOCK, AS_CALL_PTHREAD_RWLOCK_RDLOCK, AS_CALL_PTHREAD_RWLOCK_WRLOCK,
	AS_CALL_PTHREAD_COND_WAIT, AS_CALL_PTHREAD_COND_TIMEDWAIT, AS_CALL_SEM_WAIT, AS_CALL_SEM_TIMEDWAIT,
	AS_CALL_PTHREAD_JOIN,
	/* children (hooks/process.c) */
	AS_CALL_WAIT, AS_CALL_WAITPID, AS_CALL_WAIT4, AS_CALL_WAITID, AS_CALL_SYSTEM,
	/* file locks (hooks/file.c, fcntl in hooks/fd.c) */
	AS_CALL_FLOCK, AS_CALL_LOCKF, AS_CALL_FCNTL,
	/* fd to fd, batches (hooks/io.c, hooks/net.c) */
	AS_CALL_SENDFILE, AS_CALL_SPLICE, AS_CALL_RECVMMSG, AS_CALL_SENDMMSG,
	/* signal waits (hooks/signal.c) */
	AS_CALL_SIGWAITINFO, AS_CALL_SIGTIMEDWAIT,
	AS_CALL_COUNT
};

static const char *const as_call_names[] = {
	"none",
	"epoll_wait", "epoll_pwait", "epoll_pwait2",
	"poll", "ppoll", "select", "pselect",
	"sleep", "usleep", "nanosleep", "clock_nanosleep",
	"read", "write", "pread", "pwrite", "readv", "writev",
	"recv", "recvfrom", "recvmsg", "send", "sendto", "sendmsg",
	"connect", "accept", "accept4",
	"open", "openat", "fsync", "fdatasync",
	"getaddrinfo",
	"epoll_wait", "epoll_pwait", "epoll_pwait2",
	"pthread_mutex_lock", "pthread_rwlock_rdlock", "pthread_rwlock_wrlock",
	"pthread_cond_wait", "pthread_cond_timedwait", "sem_wait", "sem_timedwait",
	"pthread_join",
	"wait", "waitpid", "wait4", "waitid", "system",
	"flock", "lockf", "fcntl",
	"sendfile", "splice", "recvmmsg", "sendmmsg",
	"sigwaitinfo", "sigtimedwait",
};

_Static_assert(sizeof(as_call_names) / sizeof(as_call_names[0]) == AS_CALL_COUNT, "one name per call");

#define AS_CALL_IS_NESTED(c) ((c) >= AS_CALL_NESTED_EPOLL_WAIT && (c) <= AS_CALL_NESTED_EPOLL_PWAIT2)

/* What an fd was when a blocking call on it was recorded. */
enum as_fd_kind { AS_FD_NONE = 0, AS_FD_FILE, AS_FD_PIPE, AS_FD_SOCKET, AS_FD_TTY, AS_FD_OTHER };

static const char *const as_fd_kind_names[] = { NULL, "file", "pipe", "socket", "tty", "other" };

/* One event, 32 bytes, written only by the thread it describes.
 * Times are raw clock ticks (TSC or ns, see the header's "clock");
 * the collector converts them to ns since process start.  The field names
 * fit the first kinds; a new kind may give fd/stack/aux/dur its own meaning,
 * said next to its enum value. */
struct as_record {
	uint64_t ts;
	uint64_t dur;
	uint8_t kind;      /* enum as_kind */
	uint8_t call;      /* enum as_call */
	uint8_t fd_kind;   /* enum as_fd_kind */
	uint8_t pad;
	int32_t fd;        /* -1 when the call has no fd */
	uint32_t stack;    /* BLOCK/SAMPLE: FRAMES records that follow, 0 = none */
	uint32_t aux;
};

_Static_assert(sizeof(struct as_record) == 32, "records are 32 bytes");

#endif
