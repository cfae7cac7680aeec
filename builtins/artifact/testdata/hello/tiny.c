/* A C program compiled like Kubernetes' pause.c. */
#include <stdio.h>
#ifndef VERSION
#define VERSION HEAD
#endif
#define STR(x) #x
#define XSTR(x) STR(x)
int main(void) { printf("tiny %s\n", XSTR(VERSION)); return 0; }
