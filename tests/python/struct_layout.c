/* Prints the size and field offsets of every public struct the Python binding mirrors (python/pissa/_lib.py), as
 * one JSON object, so tests/python/test_layout.py can compare them with ctypes and catch a header that drifted. */
#include <stddef.h>
#include <stdio.h>

#include <pissa/data.h>
#include <pissa/model.h>
#include <pissa/peft.h>
#include <pissa/svd.h>
#include <pissa/train.h>

static int first;

static void begin(const char *name, size_t size) {
    printf("%s\"%s\": {\"size\": %zu, \"fields\": {", first ? "" : ", ", name, size);
    first = 0;
}

/* Every struct starts with its first field at offset 0, which therefore needs no separating comma. */
#define STRUCT(T) begin(#T, sizeof(T));
#define FIELD(T, f) printf("%s\"%s\": %zu", offsetof(T, f) == 0 ? "" : ", ", #f, offsetof(T, f))
#define END printf("}}");

int main(void) {
    first = 1;
    printf("{");
    STRUCT(pissa_llama_config)
        FIELD(pissa_llama_config, model_type); FIELD(pissa_llama_config, hidden_size);
        FIELD(pissa_llama_config, intermediate_size); FIELD(pissa_llama_config, num_hidden_layers);
        FIELD(pissa_llama_config, num_attention_heads); FIELD(pissa_llama_config, num_key_value_heads);
        FIELD(pissa_llama_config, head_dim); FIELD(pissa_llama_config, vocab_size);
        FIELD(pissa_llama_config, max_position_embeddings); FIELD(pissa_llama_config, rms_norm_eps);
        FIELD(pissa_llama_config, rope_theta); FIELD(pissa_llama_config, tie_word_embeddings);
        FIELD(pissa_llama_config, hidden_act); FIELD(pissa_llama_config, has_rope_scaling);
        FIELD(pissa_llama_config, attention_bias); FIELD(pissa_llama_config, mlp_bias);
        FIELD(pissa_llama_config, torch_dtype); FIELD(pissa_llama_config, rope_type);
        FIELD(pissa_llama_config, rope_factor); FIELD(pissa_llama_config, rope_low_freq_factor);
        FIELD(pissa_llama_config, rope_high_freq_factor);
        FIELD(pissa_llama_config, rope_original_max_position_embeddings);
        FIELD(pissa_llama_config, partial_rotary_factor); FIELD(pissa_llama_config, sliding_window);
        FIELD(pissa_llama_config, use_sliding_window); FIELD(pissa_llama_config, bias_mask);
        FIELD(pissa_llama_config, qk_norm);
    END
    STRUCT(pissa_rsvd_opts)
        FIELD(pissa_rsvd_opts, oversample); FIELD(pissa_rsvd_opts, niter); FIELD(pissa_rsvd_opts, seed);
    END
    STRUCT(pissa_init_opts)
        FIELD(pissa_init_opts, kind); FIELD(pissa_init_opts, rank); FIELD(pissa_init_opts, alpha);
        FIELD(pissa_init_opts, use_rslora); FIELD(pissa_init_opts, niter); FIELD(pissa_init_opts, oversample);
        FIELD(pissa_init_opts, seed);
    END
    STRUCT(pissa_adapter_opts)
        FIELD(pissa_adapter_opts, targets); FIELD(pissa_adapter_opts, init); FIELD(pissa_adapter_opts, dropout);
        FIELD(pissa_adapter_opts, qiter);
    END
    STRUCT(pissa_model_opts)
        FIELD(pissa_model_opts, base_dtype);
    END
    STRUCT(pissa_adapter_view)
        FIELD(pissa_adapter_view, module); FIELD(pissa_adapter_view, r); FIELD(pissa_adapter_view, in);
        FIELD(pissa_adapter_view, out); FIELD(pissa_adapter_view, scale); FIELD(pissa_adapter_view, A);
        FIELD(pissa_adapter_view, B); FIELD(pissa_adapter_view, dA); FIELD(pissa_adapter_view, dB);
    END
    STRUCT(pissa_param_view)
        FIELD(pissa_param_view, name); FIELD(pissa_param_view, ndim); FIELD(pissa_param_view, rows);
        FIELD(pissa_param_view, cols); FIELD(pissa_param_view, data); FIELD(pissa_param_view, grad);
    END
    STRUCT(pissa_optim_opts)
        FIELD(pissa_optim_opts, kind); FIELD(pissa_optim_opts, lr); FIELD(pissa_optim_opts, weight_decay);
        FIELD(pissa_optim_opts, beta1); FIELD(pissa_optim_opts, beta2); FIELD(pissa_optim_opts, eps);
        FIELD(pissa_optim_opts, momentum); FIELD(pissa_optim_opts, dampening); FIELD(pissa_optim_opts, nesterov);
    END
    STRUCT(pissa_train_opts)
        FIELD(pissa_train_opts, optim); FIELD(pissa_train_opts, schedule); FIELD(pissa_train_opts, warmup);
        FIELD(pissa_train_opts, total_steps); FIELD(pissa_train_opts, batch); FIELD(pissa_train_opts, accum);
        FIELD(pissa_train_opts, seq); FIELD(pissa_train_opts, max_grad_norm); FIELD(pissa_train_opts, seed);
        FIELD(pissa_train_opts, shuffle);
    END
    STRUCT(pissa_step_info)
        FIELD(pissa_step_info, step); FIELD(pissa_step_info, loss); FIELD(pissa_step_info, lr);
        FIELD(pissa_step_info, grad_norm); FIELD(pissa_step_info, tokens); FIELD(pissa_step_info, epoch);
    END
    STRUCT(pissa_row)
        FIELD(pissa_row, input_ids); FIELD(pissa_row, labels); FIELD(pissa_row, len); FIELD(pissa_row, position_ids);
    END
    STRUCT(pissa_data_opts)
        FIELD(pissa_data_opts, format); FIELD(pissa_data_opts, max_len); FIELD(pissa_data_opts, completion_only_loss);
        FIELD(pissa_data_opts, assistant_only_loss); FIELD(pissa_data_opts, chat_template);
    END
    printf("}\n");
    return 0;
}
