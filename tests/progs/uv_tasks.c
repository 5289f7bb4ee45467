/* uv_tasks.c — libuv work items, a slow timer callback, a cancelled item.
 *
 *   uv_tasks work     20 uv_queue_work items; each work callback sleeps
 *                     10 ms on a pool thread.  Prints "done N".
 *   uv_tasks timer    a timer callback that usleeps 60 ms on the loop.
 *   uv_tasks cancel   8 items of 20 ms on a pool of 4 (UV_THREADPOOL_SIZE),
 *                     then uv_cancel on the last one, still queued.  Prints
 *                     "cancel <uv_cancel result>" and the after-work
 *                     statuses: "completed N cancelled M". */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

static uv_work_t reqs[20];
static int completed, cancelled;

void sleepy_work(uv_work_t *req)
{
	(void)req;
	usleep(10000);
}

void longer_work(uv_work_t *req)
{
	(void)req;
	usleep(20000);
}

void work_done(uv_work_t *req, int status)
{
	(void)req;
	if (status == UV_ECANCELED)
		cancelled++;
	else if (status == 0)
		completed++;
}

void slow_timer_cb(uv_timer_t *t)
{
	usleep(60000);
	uv_close((uv_handle_t *)t, NULL);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "work";
	uv_loop_t *loop = uv_default_loop();
	if (!strcmp(mode, "work")) {
		for (int i = 0; i < 20; i++)
			uv_queue_work(loop, &reqs[i], sleepy_work, work_done);
		uv_run(loop, UV_RUN_DEFAULT);
		printf("done %d\n", completed);
	} else if (!strcmp(mode, "timer")) {
		uv_timer_t timer;
		uv_timer_init(loop, &timer);
		uv_timer_start(&timer, slow_timer_cb, 10, 0);
		uv_run(loop, UV_RUN_DEFAULT);
	} else if (!strcmp(mode, "cancel")) {
		for (int i = 0; i < 8; i++)
			uv_queue_work(loop, &reqs[i], longer_work, work_done);
		int r = uv_cancel((uv_req_t *)&reqs[7]);
		printf("cancel %d\n", r);
		uv_run(loop, UV_RUN_DEFAULT);
		printf("completed %d cancelled %d\n", completed, cancelled);
	} else {
		fprintf(stderr, "usage: uv_tasks work|timer|cancel\n");
		return 2;
	}
	uv_loop_close(loop);
	return 0;
}
