/* libpissa — PiSSA and LoRA fine-tuning of transformer checkpoints. Umbrella header. */
#ifndef PISSA_H
#define PISSA_H

#include "pissa/common.h"
#include "pissa/fileio.h"
#include "pissa/tensor.h"
#include "pissa/svd.h"
#include "pissa/quant.h"
#include "pissa/adapter.h"
#include "pissa/safetensors.h"
#include "pissa/checkpoint.h"
#include "pissa/peft.h"
#include "pissa/interop.h"
#include "pissa/tokenizer.h"
#include "pissa/chat.h"
#include "pissa/data.h"
#include "pissa/generate.h"
#include "pissa/model.h"
#include "pissa/train.h"

#endif
