/* Error codes, exit statuses and the string buffer. */
#include "util/common.h"
#include "util/log.h"
#include "test_util.h"

#include <string.h>

int main(void)
{
    deft_err_t err = {0};
    CHECK(deft_fail(&err, DEFT_ERR_IO, "%s: cannot open", "x.jsonl") == DEFT_ERR_IO);
    CHECK(strcmp(err.msg, "x.jsonl: cannot open") == 0);
    CHECK(deft_exit_status(DEFT_OK) == 0);
    CHECK(deft_exit_status(DEFT_HELP) == 0);
    CHECK(deft_exit_status(DEFT_ERR_USAGE) == 2);
    CHECK(deft_exit_status(DEFT_ERR_FORMAT) == 3);
    CHECK(deft_exit_status(DEFT_ERR_IO) == 1);
    CHECK(deft_exit_status(DEFT_STOPPED) == 1);  /* a stop is not a success */

    strbuf_t sb = {0};
    for (int i = 0; i < 1000; i++)
        sb_printf(&sb, "%d,", i);
    CHECK(sb.len == strlen(sb.data));
    CHECK(strncmp(sb.data, "0,1,2,", 6) == 0);
    sb_free(&sb);

    char d[32];
    format_duration(d, sizeof d, 3725);
    CHECK(strcmp(d, "1:02:05") == 0);
    format_duration(d, sizeof d, 65);
    CHECK(strcmp(d, "1:05") == 0);
    TEST_DONE();
}
