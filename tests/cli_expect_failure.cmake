# Runs `gonfalon eval` on DATA and passes only if it exits non-zero with EXPECT on stderr.
execute_process(
  COMMAND ${GONFALON} eval --data ${DATA} --context {"key":"u1"}
  RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_VARIABLE out TIMEOUT 20)
if(rc EQUAL 0)
  message(FATAL_ERROR "gonfalon eval exited 0 on a malformed file; stdout: ${out}")
endif()
if(NOT err MATCHES "${EXPECT}")
  message(FATAL_ERROR "stderr does not match '${EXPECT}': ${err}")
endif()
message(STATUS "exit ${rc}: ${err}")
