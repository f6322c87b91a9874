"""Double DQN on the Arcade Learning Environment (issue 15): environments, replay, network, learner."""
