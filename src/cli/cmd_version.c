/* deft version */
#include <stdio.h>

#include "cli/commands.h"

#ifndef DEFT_VERSION
#define DEFT_VERSION "0.1.0"
#endif

int cmd_version(int argc, char **argv)
{
    printf("deft %s\n", DEFT_VERSION);
    return 0;
}
