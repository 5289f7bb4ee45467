/* tasks.h — the task model of a trace: tasks (coroutines, thread-pool work),
 * their tree, runs and waits; slow loop callbacks by function; the function
 * names the shim interned.  Filled record by record from trace.c (records of
 * one task may come from several threads, in any order), then finished once. */
#ifndef ASYNCSHIM_TASKS_H
#define ASYNCSHIM_TASKS_H

#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>

struct task_model;

/* Does this record type belong to the task model? */
int tasks_is_type(const char *type);

/* Load one record (*m is created on first use).  *last_ns gets the latest
 * time the record mentions (0 if none).  Returns 0, or -1 if corrupt. */
int tasks_load(struct task_model **m, const char *type, const msgpack_object *o, uint64_t *last_ns);

struct trace;

/* Counts, tree and statistics, once the whole trace is loaded; functions
 * the shim could not name are symbolized from the trace's module map. */
void tasks_finish(struct task_model *m, const struct trace *tr);

/* Report sections: `"tasks":{...},"slow_callbacks":[...]` (no braces around,
 * no leading comma) and the text form.  m may be NULL (nothing recorded). */
void tasks_json(FILE *f, const struct task_model *m);
/* the same with at most tree_max nodes in the tree (the HTML page has a smaller budget) */
void tasks_json_tree(FILE *f, const struct task_model *m, uint64_t tree_max);
void tasks_text(FILE *f, const struct task_model *m, uint64_t block_ms);

void tasks_free(struct task_model *m);

#endif
