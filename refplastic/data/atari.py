"""The built-in image data sets: frames of ten Atari 2600 games played at random; class = game.

``builtin`` is RGB frames of :data:`GAMES` (CIFAR-10's shape, 3x32x32); ``builtin-gray`` is
gray-scale frames of ten other games, :data:`GRAY_GAMES` (one channel, as MNIST).

Nothing is downloaded: the ROMs ship inside ale-py (a core dependency, which checks each ROM's
MD5 before loading it), and ale-py's native vector environment (``ale_py.vector_env.
AtariVectorEnv``) emulates the games and renders the frames. Each game runs in its own
environment, one emulator each, all stepped in lock step (so the emulators run in parallel on
ale-py's threads). An agent step repeats an action for 4 emulator frames and shows the pixel-wise
maximum of the last two (``frameskip=4, maxpool=True``); the screen (210x160) is shrunk to 32x32 by
area averaging (ale-py's C++ resize, OpenCV's ``INTER_AREA`` compiled into ale-py; nothing
imported from Python). An episode starts after up to 30 no-op frames (``noop_max=30``, drawn by
ale-py from the episode's seed) and FIRE, and restarts by itself when it ends.

The actions, each game's reset seed and the gaps between kept frames come from numpy Generators
spawned from ``seed`` (one per game and one for the final shuffle), so the set is a function of
``(seed, n_train, n_test, grayscale, games)`` and of the ale-py version: a frame is kept every
``g ~ U{1..4}`` agent steps, unless it is a byte-for-byte copy of a frame already kept. The
first ``n_train / len(games)`` kept frames of a game are its train images and the rest its test
images (test frames come from later play, never from between two train frames).
"""

import numpy as np

from .images import ImageDataset

GAMES = ("boxing", "riverraid", "beam_rider", "time_pilot", "demon_attack", "asterix", "ms_pacman",
         "skiing", "fishing_derby", "road_runner")
GRAY_GAMES = ("zaxxon", "assault", "bank_heist", "battle_zone", "atlantis", "krull", "hero", "yars_revenge",
              "up_n_down", "private_eye")
IMAGE_SIZE = 32
FRAMESKIP = 4
MAX_GAP = 4  # agent steps between kept frames: U{1..MAX_GAP}
MAX_STEPS_PER_FRAME = 50  # refuse a game needing more agent steps than this per new frame (a still screen)


def atari_frames(seed=0, n_train=5000, n_test=1000, grayscale=False, games=GAMES, name="builtin"):
    """An :class:`ImageDataset` of ``n_train + n_test`` frames, the same number from each game:
    (N, 3, 32, 32) RGB (or (N, 1, 32, 32) gray-scale, ale-py's luminance), labels the index of
    the game in ``games``, each part shuffled."""
    import ale_py  # here, not at the top: importing ale-py and gymnasium takes a quarter of a second

    games = tuple(games)
    if n_train <= 0 or n_test <= 0 or n_train % len(games) or n_test % len(games):
        raise ValueError(f"n_train ({n_train}) and n_test ({n_test}) must be positive multiples of the "
                         f"number of games ({len(games)}), so that every game has as many frames")
    unknown = [g for g in games if g not in ale_py.roms.get_all_rom_ids()]
    if unknown or len(set(games)) != len(games):
        raise ValueError(f"games must be distinct ROM names of ale-py {ale_py.__version__}; "
                         f"{', '.join(unknown) or 'a name repeats'}")
    *game_rngs, shuffle_rng = np.random.default_rng(seed).spawn(len(games) + 1)
    frames = _play(games, game_rngs, (n_train + n_test) // len(games), grayscale)
    per_game_train = n_train // len(games)
    x_train, y_train = _shuffled(frames[:, :per_game_train], shuffle_rng)
    x_test, y_test = _shuffled(frames[:, per_game_train:], shuffle_rng)
    source = (f"random-play frames of {len(games)} Atari 2600 games, ale-py {ale_py.__version__}, "
              f"seed {seed}, {IMAGE_SIZE}x{IMAGE_SIZE} {'gray' if grayscale else 'RGB'}")
    return ImageDataset(name, x_train, y_train, x_test, y_test, games, source)


def _shuffled(frames, rng):
    """Frames (G, n, C, H, W) of G games as images (G n, C, H, W) and labels (the game's index),
    in an order drawn from ``rng``."""
    g, n = frames.shape[:2]
    order = rng.permutation(g * n)
    return frames.reshape(g * n, *frames.shape[2:])[order], np.repeat(np.arange(g, dtype=np.int64), n)[order]


def _play(games, rngs, per_game, grayscale):
    """(len(games), per_game, C, 32, 32) uint8: ``per_game`` distinct frames of each game, in the
    order they were kept."""
    from ale_py.vector_env import AtariVectorEnv

    envs = []
    try:
        for game, rng in zip(games, rngs):
            envs.append(AtariVectorEnv(game, num_envs=1, img_height=IMAGE_SIZE, img_width=IMAGE_SIZE,
                                       grayscale=grayscale, stack_num=1, frameskip=FRAMESKIP, num_threads=1))
            envs[-1].reset(seed=rng.integers(0, 2**31 - 1, size=1))
        num_actions = [env.single_action_space.n for env in envs]
        kept = [[] for _ in games]
        seen = set()
        countdown = [int(rng.integers(1, MAX_GAP + 1)) for rng in rngs]
        playing = list(range(len(games)))
        steps = 0
        while playing:
            for g in playing:
                envs[g].send(rngs[g].integers(0, num_actions[g], size=1))
            for g in playing:
                screen = envs[g].recv()[0][0, 0]  # (H, W, 3) RGB or (H, W) gray
                countdown[g] -= 1
                if countdown[g] == 0:
                    countdown[g] = int(rngs[g].integers(1, MAX_GAP + 1))
                    frame = screen.transpose(2, 0, 1) if screen.ndim == 3 else screen[None]
                    if frame.tobytes() not in seen:
                        seen.add(frame.tobytes())
                        kept[g].append(np.array(frame))
            steps += 1
            playing = [g for g in playing if len(kept[g]) < per_game]
            for g in playing:
                if steps > MAX_STEPS_PER_FRAME * (len(kept[g]) + 1):
                    raise ValueError(f"{games[g]} gave only {len(kept[g])} distinct frames in {steps} steps")
    finally:
        for env in envs:
            env.close()
    return np.stack([np.stack(k) for k in kept])
