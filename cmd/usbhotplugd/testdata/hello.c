/* BenchmarkVersusXL's other yardstick: the least a dynamic C program does,
 * as xl starts (xl is dynamic C, linked against libxenlight). */
#include <unistd.h>

int main(void)
{
	return write(1, "hello\n", 6) == 6 ? 0 : 1;
}
