/* Section of nn.h (merged into nn.h before release). Include <nn.h>, not this. */
#ifndef NN_PART_IO_H
#define NN_PART_IO_H
#ifndef NN_H
#error "include <nn.h> instead"
#endif

#endif
